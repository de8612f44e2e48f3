"""Shell completion: the script 'disruptfeed completion SHELL' prints, and that it completes."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from click.testing import CliRunner

from disruptfeed.cli import main

pytestmark = pytest.mark.unit


def test_bash_script_is_clicks_and_parses() -> None:
    result = CliRunner().invoke(main, ["completion", "bash"])
    assert result.exit_code == 0, result.output
    script = result.stdout
    assert "_disruptfeed_completion()" in script
    assert "_DISRUPTFEED_COMPLETE=bash_complete" in script
    assert "complete -o nosort -F _disruptfeed_completion disruptfeed" in script
    bash = shutil.which("bash")
    assert bash is not None
    checked = subprocess.run(
        [bash, "-n"], check=False, input=script, text=True, capture_output=True
    )
    assert checked.returncode == 0, checked.stderr


@pytest.mark.parametrize(
    ("shell", "marker"),
    [("zsh", "#compdef disruptfeed"), ("fish", "complete --no-files --command disruptfeed")],
)
def test_zsh_and_fish_scripts(shell: str, marker: str) -> None:
    result = CliRunner().invoke(main, ["completion", shell])
    assert result.exit_code == 0, result.output
    assert marker in result.stdout
    assert f"_DISRUPTFEED_COMPLETE={shell}_complete" in result.stdout


def test_an_unknown_shell_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["completion", "tcsh"])
    assert result.exit_code == 2


def test_the_script_completes_commands_and_options() -> None:
    """What the bash script asks click for when Tab is pressed after 'disruptfeed cou'."""

    def complete(words: str, cword: int) -> list[str]:
        env = {"_DISRUPTFEED_COMPLETE": "bash_complete", "COMP_WORDS": words}
        env["COMP_CWORD"] = str(cword)
        result = CliRunner().invoke(main, [], env=env, prog_name="disruptfeed")
        assert result.exit_code == 0, result.output
        return result.stdout.splitlines()

    assert complete("disruptfeed cou", 1) == ["plain,counts"]
    assert "plain,--output" in complete("disruptfeed counts --", 2)
    assert complete("disruptfeed counts --output j", 3) == ["plain,json", "plain,jsonl"]
