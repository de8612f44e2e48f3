"""Bench cases that run their app in a child process: ``python -m <module> CONFIG``.

The parent writes the app's configuration as a JSON file (created private: it holds connection
settings, perhaps a password), runs the module with its output in a log file, and reads back the
JSON result file the child writes when it is done.
"""

from __future__ import annotations

__all__ = ["run_child"]

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from disruptfeed.bench._errors import BenchError

_TIMEOUT_S = 600.0


def run_child(module: str, what: str, config: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """Run ``python -m module`` on ``config``; return the result document it wrote.

    ``config`` gets a ``result`` entry: the path the child writes its result to.

    Raises:
        BenchError: the child timed out, or exited without writing its result (the log's tail
            says why).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    name = module.rsplit(".", 1)[-1].lstrip("_")
    config_file, result, log = (
        workdir / f"{name}{ext}" for ext in (".json", ".result.json", ".log")
    )
    config_file.touch(mode=0o600)
    config_file.write_text(json.dumps({**config, "result": str(result)}), encoding="utf-8")
    with log.open("ab") as out:
        try:
            done = subprocess.run(
                [sys.executable, "-m", module, str(config_file)],
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:  # run() has killed it
            raise BenchError(f"{what} did not finish within {_TIMEOUT_S:g} s") from exc
    if done.returncode != 0 or not result.is_file():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise BenchError(f"{what} failed (exit {done.returncode}):\n{tail}")
    figures: dict[str, Any] = json.loads(result.read_text(encoding="utf-8"))
    return figures
