"""``disruptfeed completion``: the shell completion script, from click's own mechanism."""

from __future__ import annotations

__all__ = ["completion"]

import click

COMPLETE_VAR = "_DISRUPTFEED_COMPLETE"
"""The variable click's completion reads (``_<PROG>_COMPLETE``): ``bash_source`` and so on."""

_HELP = """Print the completion script for SHELL: commands, options and choices complete on Tab.

\b
bash:  echo 'eval "$(disruptfeed completion bash)"' >> ~/.bashrc
zsh:   echo 'eval "$(disruptfeed completion zsh)"' >> ~/.zshrc
fish:  disruptfeed completion fish > ~/.config/fish/completions/disruptfeed.fish

The same script comes from click directly: _DISRUPTFEED_COMPLETE=bash_source disruptfeed
(zsh_source, fish_source).
"""


@click.command(help=_HELP)
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print click's completion script for ``shell``."""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None  # the three choices are click's own shells
    root = ctx.find_root().command
    click.echo(cls(root, {}, "disruptfeed", COMPLETE_VAR).source())
