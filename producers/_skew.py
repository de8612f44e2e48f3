"""The publish-side bound on event time: no event further ahead of our clock than the skew."""

from __future__ import annotations

__all__ = ["too_far_ahead"]

import time

from disruptfeed.errors import FutureEventTimeError
from disruptfeed.settings import Settings
from schemas import EventBase


def too_far_ahead(event: EventBase, settings: Settings) -> FutureEventTimeError | None:
    """The error for an event whose time is beyond the allowed skew ahead of this clock."""
    now_ms = time.time_ns() // 1_000_000
    occurred_ms = int(event.occurred_at.timestamp() * 1000)
    if occurred_ms - now_ms <= settings.max_future_skew_seconds * 1000:
        return None
    return FutureEventTimeError.ahead(occurred_ms, now_ms, settings.max_future_skew_seconds)
