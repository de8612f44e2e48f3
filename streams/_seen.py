"""The ids of counted events, kept only as long as a duplicate of them can still be counted.

An event older than its partition's stream time minus the dedupe horizon is refused before
its id is looked up (``beyond-dedupe-horizon``, see :class:`~streams.Processor`), so its id no
longer needs keeping: ids are held in buckets of one day of event time per source partition,
and a bucket goes once its whole day is beyond the horizon. Memory and restore time then
follow the horizon, not the history.
"""

from __future__ import annotations

__all__ = ["DAY_MS", "SeenIds"]

from collections.abc import Iterator
from typing import Final

DAY_MS: Final = 86_400_000


class SeenIds:
    """Counted event ids (``UUID.int``), bucketed by source partition and day of event time."""

    __slots__ = ("_buckets", "_floor")

    def __init__(self) -> None:
        self._buckets: dict[tuple[str, int], set[int]] = {}
        self._floor: dict[str, int] = {}  # source -> first day still kept

    def add(self, event_id: int, source: str, occurred_ms: int) -> None:
        """Remember one counted id (unless its day was already evicted)."""
        day = occurred_ms // DAY_MS
        if day < self._floor.get(source, day):
            return
        bucket = self._buckets.get((source, day))
        if bucket is None:
            bucket = self._buckets[(source, day)] = set()
        bucket.add(event_id)

    def seen(self, event_id: int, source: str, occurred_ms: int) -> bool:
        """Whether this id was counted (a duplicate carries its original's time and source)."""
        bucket = self._buckets.get((source, occurred_ms // DAY_MS))
        return bucket is not None and event_id in bucket

    def evict_before(self, source: str, horizon_ms: int) -> int:
        """Drop the days of ``source`` that end at or before ``horizon_ms``; how many ids went."""
        floor = horizon_ms // DAY_MS
        if floor <= self._floor.get(source, -(2**62)):
            return 0
        self._floor[source] = floor
        gone = [key for key in self._buckets if key[0] == source and key[1] < floor]
        return sum(len(self._buckets.pop(key)) for key in gone)

    def __iter__(self) -> Iterator[int]:
        for bucket in self._buckets.values():
            yield from bucket

    def __len__(self) -> int:
        return sum(len(bucket) for bucket in self._buckets.values())
