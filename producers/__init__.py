"""Publishing events: the typed async producer and JSON Lines publishing."""

from __future__ import annotations

__all__ = [
    "FeedProducer",
    "LineResult",
    "PublishOutcome",
    "PublishReport",
    "publish_lines",
    "read_events",
]

from producers._jsonl import LineResult, read_events
from producers._producer import FeedProducer, PublishOutcome
from producers._publish import PublishReport, publish_lines
