"""The one use of Faust's private API: naming the current event of a table write.

Faust has no public way to say which record a table write belongs to (it takes it from a
context variable that stream iteration sets per record), and ``take_events`` hands the agent a
batch. ``faust.streams._current_event`` is set here and nowhere else; faust-streaming is pinned
to 0.15.x in pyproject.toml for it, and tests/unit/test_compat.py fails if it moves.
"""

from __future__ import annotations

__all__ = ["as_current"]

import contextlib
import weakref
from collections.abc import Iterator
from typing import Any

from faust import streams as faust_streams


@contextlib.contextmanager
def as_current(event: Any) -> Iterator[None]:
    """Make ``event`` Faust's current event while a table is written in this task.

    Faust writes a table row to the changelog partition of the current event, which stream
    iteration sets per record. ``take_events`` hands the agent a batch instead, so the agent names
    the record each write belongs to. The context variable is the task's own: the stream's
    drainer task, which sets its own, is unaffected.
    """
    token = faust_streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust_streams._current_event.reset(token)
