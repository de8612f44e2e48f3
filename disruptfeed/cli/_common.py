"""What every subcommand shares: settings, common options, output, progress, exit codes.

Settings: flags such as ``--bootstrap`` never read the environment themselves. Their callbacks
note the value under the settings field it sets, and :func:`settings_from` builds the one
:class:`~disruptfeed.settings.Settings` object with them as init arguments, which pydantic-settings
puts above ``DISRUPTFEED_*`` variables, which it puts above the defaults: flag > env > default.

Usage in a command::

    @click.command()
    @bootstrap_option
    @output_option()
    @click.pass_context
    def cmd(ctx: click.Context, output: str) -> None:
        settings = settings_from(ctx)
        emit(output, document, rows, table)
"""

from __future__ import annotations

__all__ = [
    "EXIT_BROKER",
    "EXIT_CONFIG",
    "EXIT_REJECTED",
    "EXIT_USAGE",
    "LOG_FORMAT_KEY",
    "OUTPUT_FORMATS",
    "announce",
    "bootstrap_option",
    "dispatcher_url_option",
    "emit",
    "fail",
    "progress",
    "rules_option",
    "run",
    "settings_from",
    "token_option",
    "worker_url_option",
]

import asyncio
import functools
import json
import sys
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any, Final, NoReturn, TypeVar

import click

from disruptfeed.errors import BrokerError, DisruptFeedError
from disruptfeed.settings import Settings

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

EXIT_REJECTED = 1
"""Some input was rejected; the rest was processed."""
EXIT_USAGE = 2
"""The command line itself is wrong (a filter, a time range, a file); nothing was done."""
EXIT_BROKER = 3
"""The broker could not be reached or refused; retrying later may work."""
EXIT_CONFIG = 4
"""Settings, tools or arguments are wrong; retrying will not help until they are fixed."""

LOG_FORMAT_KEY: Final = "disruptfeed.log_format"
"""ctx.meta key: the main group's --log-format, for the processes a command starts."""
_OVERRIDES: Final = "disruptfeed.settings_overrides"
"""ctx.meta key (shared by every context of one invocation): settings field -> flag value."""
_FLAGS: Final = "disruptfeed.settings_flags"
"""ctx.meta key: settings field -> the flag that set it, for error messages."""


def fail(message: str, code: int = EXIT_CONFIG) -> NoReturn:
    """Print ``error: message`` to stderr and exit with ``code``."""
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine, turning project errors into a message and an exit code."""
    try:
        return asyncio.run(coro)
    except BrokerError as exc:
        fail(str(exc), EXIT_BROKER)
    except DisruptFeedError as exc:
        fail(str(exc), EXIT_CONFIG)


def announce(ctx: click.Context, message: str) -> None:
    """One line for people on stderr (a server starting); none with ``--log-format json``.

    In JSON mode stderr holds JSON lines only, for the machine that reads it.
    """
    if ctx.meta.get(LOG_FORMAT_KEY) != "json":
        click.echo(message, err=True)


def settings_from(ctx: click.Context) -> Settings:
    """The settings for this invocation: flags over ``DISRUPTFEED_*`` over defaults.

    A test may inject a Settings object as the root context's ``obj``; flags then apply on top
    of it instead of on top of the environment.
    """
    overrides: dict[str, Any] = dict(ctx.meta.get(_OVERRIDES, {}))
    obj = ctx.find_root().obj
    try:
        if isinstance(obj, Settings):
            if not overrides:
                return obj
            # Every field given: the injected values stand, whatever the environment says.
            base = {name: getattr(obj, name) for name in type(obj).model_fields}
            return type(obj)(**{**base, **overrides})
        # Built here, not cached: one invocation, one settings object, the environment as it is.
        return Settings(**overrides)
    except Exception as exc:  # pydantic's ValidationError, with the field at fault
        flags = ctx.meta.get(_FLAGS, {})
        named = ", ".join(f"{flag} sets {field}" for field, flag in flags.items())
        fail(f"invalid setting{f' ({named})' if named else ''}:\n{exc}")


def _setting_option(
    *decls: str, field: str, env: str, default: str, help_text: str, **kwargs: Any
) -> Callable[[F], F]:
    """An option that sets one Settings field; its help names the variable and the default."""

    def remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is not None:
            ctx.meta.setdefault(_OVERRIDES, {})[field] = value
            ctx.meta.setdefault(_FLAGS, {})[field] = param.opts[0]
        return value

    return click.option(
        *decls,
        default=None,
        expose_value=False,
        is_eager=True,  # noted before any command body can ask for the settings
        callback=remember,
        help=f"{help_text}  [env var: {env}; default: {default}]",
        **kwargs,
    )


bootstrap_option: Final = _setting_option(
    "--bootstrap",
    field="bootstrap_servers",
    env="DISRUPTFEED_BOOTSTRAP_SERVERS",
    default="127.0.0.1:19092, the embedded broker",
    metavar="HOST:PORT,...",
    help_text="The Kafka cluster to use.",
)
worker_url_option: Final = _setting_option(
    "--url",
    field="worker_url",
    env="DISRUPTFEED_WORKER_URL",
    default="http://127.0.0.1:6066, from DISRUPTFEED_WORKER_HOST and _PORT",
    metavar="URL",
    help_text="The worker's query API.",
)
dispatcher_url_option: Final = _setting_option(
    "--url",
    field="dispatcher_url",
    env="DISRUPTFEED_DISPATCHER_URL",
    default="http://127.0.0.1:6067, from DISRUPTFEED_DISPATCHER_HOST and _PORT",
    metavar="URL",
    help_text="The dispatcher's API.",
)
token_option: Final = _setting_option(
    "--token",
    field="api_token",
    env="DISRUPTFEED_API_TOKEN",
    default="the one generated into <data dir>/api-token",
    metavar="TOKEN",
    help_text="Bearer token of the HTTP APIs (a server takes a comma-separated list).",
)
rules_option: Final = _setting_option(
    "--rules",
    field="rules_file",
    env="DISRUPTFEED_RULES_FILE",
    default="the rules shipped in streams/rules.toml",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help_text="Alert rules (TOML).",
)


OUTPUT_FORMATS: Final = ("table", "json", "jsonl")


def output_option(*, json_alias: str | None = "json", streaming: bool = False) -> Callable[[F], F]:
    """``--output table|json|jsonl`` as the ``output`` argument of the command.

    Args:
        json_alias: what the command's older ``--json`` flag meant (kept, hidden), or None.
        streaming: the command prints an unbounded stream; json then means one JSON object
            per line as jsonl does (a stream never ends to close a document).
    """
    text = (
        "table: lines for people; json and jsonl: one JSON object per line."
        if streaming
        else "table: for people; json: one JSON document; jsonl: one JSON object per line."
    )

    def decorate(f: F) -> F:
        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if kwargs.pop("json_alias", False) and json_alias is not None:
                kwargs["output"] = json_alias
            return f(*args, **kwargs)

        command: Any = click.option(
            "--output",
            type=click.Choice(OUTPUT_FORMATS),
            default="table",
            show_default=True,
            help=text,
        )(wrapper)
        if json_alias is not None:
            command = click.option(
                "--json",
                "json_alias",
                is_flag=True,
                hidden=True,
                help=f"Same as --output {json_alias}.",
            )(command)
        return command  # type: ignore[no-any-return]

    return decorate


def emit(
    output: str,
    document: Any,
    rows: Iterable[Any],
    table: Callable[[], str],
) -> None:
    """Print data in the asked format.

    Args:
        output: ``table``, ``json`` or ``jsonl``.
        document: what ``json`` prints, as one document.
        rows: what ``jsonl`` prints, one object per line.
        table: the text for people (called only for ``table``).
    """
    if output == "json":
        click.echo(json.dumps(document, sort_keys=True, default=str))
    elif output == "jsonl":
        for row in rows:
            click.echo(json.dumps(row, sort_keys=True, default=str))
    else:
        click.echo(table())


def progress(
    total: int | float | None, desc: str, unit: str = "lines", *, scale: bool = False
) -> Any:
    """A progress bar on stderr, the same on every long command; off unless stderr is a TTY.

    Piped into a file or a CI log, nothing is drawn: the command prints its summary only.
    """
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit=unit if scale else f" {unit}",
        unit_scale=scale,
        file=sys.stderr,
        disable=not _isatty(sys.stderr),
        leave=False,
        dynamic_ncols=True,
    )


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
