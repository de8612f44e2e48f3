"""Helpers for integration tests: read a project's topics back to the end."""

from __future__ import annotations

from consumers import Received, Subscription
from disruptfeed.settings import Settings
from schemas import EventBase


async def read_all(settings: Settings, *topics: str | type[EventBase]) -> list[Received]:
    """Every record on the topics now, from the beginning, without a group or dedupe."""
    async with Subscription(
        topics, settings=settings, start="earliest", stop_at_end=True, dedupe_window=0
    ) as sub:
        return [received async for received in sub]
