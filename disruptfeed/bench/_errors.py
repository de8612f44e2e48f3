"""The benchmark's own error."""

from __future__ import annotations

__all__ = ["BenchError"]

from disruptfeed.errors import DisruptFeedError


class BenchError(DisruptFeedError):
    """A case could not be measured: a tool failed, a process died, or a deadline passed."""
