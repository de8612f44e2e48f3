"""JSON Lines input: one event per line, each validated on its own.

A bad line is reported with its line number, the offending field and the reason, and never stops
the lines around it. Blank lines are ignored. Nothing is sent from here: this module only reads.
"""

from __future__ import annotations

__all__ = ["LineResult", "read_events"]

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from disruptfeed.errors import DecodeError, FieldProblem, InvalidEventError
from schemas import MAX_EVENT_BYTES, Event, codec


@dataclass(frozen=True, slots=True)
class LineResult:
    """One non-blank input line: the event it holds, or why it was rejected."""

    line: int
    event: Event | None = None
    error: InvalidEventError | None = None

    def describe(self, name: str = "<stdin>") -> str:
        """``name:line: field: reason`` lines, one per problem, for error output."""
        if self.error is None:
            return f"{name}:{self.line}: ok"
        return "\n".join(f"{name}:{self.line}: {p}" for p in self.error.problems)


def read_events(lines: Iterable[bytes]) -> Iterator[LineResult]:
    """Validate each line of a JSON Lines stream (bytes, with or without newlines)."""
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip(b"\r\n")
        if not line.strip():
            continue
        if len(line) > MAX_EVENT_BYTES:
            problem = FieldProblem("", f"line is {len(line)} bytes; the limit is {MAX_EVENT_BYTES}")
            yield LineResult(number, error=DecodeError([problem]))
            continue
        try:
            yield LineResult(number, event=codec.decode(line))
        except InvalidEventError as exc:
            yield LineResult(number, error=exc)
