"""What every subcommand shares: settings, async running, and turning errors into exit codes."""

from __future__ import annotations

__all__ = [
    "EXIT_BROKER",
    "EXIT_CONFIG",
    "EXIT_REJECTED",
    "EXIT_USAGE",
    "fail",
    "run",
    "settings_from",
]

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, NoReturn, TypeVar

import click

from disruptfeed.errors import BrokerError, DisruptFeedError
from disruptfeed.settings import Settings, get_settings

T = TypeVar("T")

EXIT_REJECTED = 1
"""Some input was rejected; the rest was processed."""
EXIT_USAGE = 2
"""The command line itself is wrong (a filter, a time range, a file); nothing was done."""
EXIT_BROKER = 3
"""The broker could not be reached or refused; retrying later may work."""
EXIT_CONFIG = 4
"""Settings, tools or arguments are wrong; retrying will not help until they are fixed."""


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


def settings_from(ctx: click.Context) -> Settings:
    """The settings for this invocation (the process-wide ones unless a test injected others)."""
    obj = ctx.find_root().obj
    if isinstance(obj, Settings):
        return obj
    try:
        return get_settings()
    except Exception as exc:  # pydantic's ValidationError, with the variable at fault
        fail(f"invalid DISRUPTFEED_* setting:\n{exc}")
