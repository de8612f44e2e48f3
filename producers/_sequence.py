"""Gap-free sequence numbers per event source, persisted across publisher restarts.

A publisher numbers the events of each source 1, 2, 3, ... (the CloudEvents ``sequence``
extension), so an auditor can tell a dropped event from one never sent. The last number the
broker acknowledged, and the highest offset acknowledged per partition, are written after each
batch to ``<data_dir>/sequences/<feed>.json`` (write, then rename: a crash leaves the old or the
new file, never half of one). A publisher killed between the acknowledgement and the write
would restart from a number already used, so on start it also reads what the feed holds after
the recorded offsets and goes on from the highest number it finds there for its sources.

One process owns a feed's sequences at a time (an exclusive ``flock`` on the file); a second
publisher for the same feed and data directory gets a clear error instead of reusing numbers.
Inside one process, every :class:`FeedProducer` of a feed shares one store.
"""

from __future__ import annotations

__all__ = ["SequenceStore", "sequence_store"]

import fcntl
import hashlib
import os
import tempfile
from pathlib import Path
from typing import IO, Any

import orjson

from disruptfeed._aiokafka import cluster_metadata
from disruptfeed.errors import ConfigurationError
from disruptfeed.settings import Settings
from disruptfeed.topics import EVENT_TOPICS
from schemas._provenance import SEQUENCE_HEADER


class SequenceStore:
    """The sequence counters of one feed (bootstrap servers and topic prefix)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock: IO[bytes] | None = None
        self._last: dict[str, int] = {}
        self._offsets: dict[str, int] = {}
        self._users = 0
        self.reconciled = False

    def acquire(self) -> None:
        """Take the feed's lock and load the counters (once per process)."""
        self._users += 1
        if self._lock is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = (self.path.with_suffix(".lock")).open("ab")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            self._users -= 1
            raise ConfigurationError(
                f"another process is publishing to this feed with sequence file {self.path}; "
                "stop it, or give this publisher its own DISRUPTFEED_DATA_DIR and source"
            ) from None
        self._lock = lock
        try:
            state = orjson.loads(self.path.read_bytes()) if self.path.exists() else {}
        except orjson.JSONDecodeError:
            state = {}  # an unreadable file is rebuilt from the feed by reconcile()
        self._last = {str(k): int(v) for k, v in state.get("last", {}).items()}
        self._offsets = {str(k): int(v) for k, v in state.get("offsets", {}).items()}

    def release(self) -> None:
        """Drop one user; the last one writes the counters and unlocks."""
        self._users -= 1
        if self._users > 0 or self._lock is None:
            return
        self.save()
        self._lock.close()
        self._lock = None
        self.reconciled = False

    def next(self, source: str) -> int:
        """The next number of ``source``: one more than the last one handed out."""
        value = self._last.get(source, 0) + 1
        self._last[source] = value
        return value

    def give_back(self, source: str, value: int) -> None:
        """Return the number just handed out for a record that was never sent."""
        if self._last.get(source) == value:
            self._last[source] = value - 1

    def acknowledged(self, topic: str, partition: int, offset: int) -> None:
        """Remember the highest acknowledged offset of a partition (the start of reconcile)."""
        key = f"{topic}:{partition}"
        if offset > self._offsets.get(key, -1):
            self._offsets[key] = offset

    def save(self) -> None:
        """Write the counters atomically."""
        data = orjson.dumps({"last": self._last, "offsets": self._offsets})
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".seq-")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, self.path)

    async def reconcile(self, settings: Settings, consumer: Any) -> None:
        """Go past any number the feed holds that the file missed (a crash before save)."""
        from aiokafka import TopicPartition

        if self.reconciled:
            return
        cluster = await cluster_metadata(consumer)
        parts = []
        for name in EVENT_TOPICS:
            topic = settings.topic(name)
            for partition in sorted(cluster.partitions_for_topic(topic) or ()):
                parts.append(TopicPartition(topic, partition))
        if parts:
            ends = await consumer.end_offsets(parts)
            consumer.assign(parts)
            for tp in parts:
                start = self._offsets.get(f"{tp.topic}:{tp.partition}", -1) + 1
                if start >= ends[tp]:
                    consumer.pause(tp)
                else:
                    consumer.seek(tp, start)
            await self._scan(consumer, {tp: ends[tp] for tp in parts})
        self.reconciled = True

    async def _scan(self, consumer: Any, ends: dict[Any, int]) -> None:
        left = {tp for tp, end in ends.items() if self._offsets.get(_key(tp), -1) + 1 < end}
        while left:
            batches = await consumer.getmany(*left, timeout_ms=1_000, max_records=10_000)
            for tp, records in batches.items():
                for record in records:
                    self._observe(record)
                    self.acknowledged(tp.topic, tp.partition, record.offset)
            for tp in list(left):
                if await consumer.position(tp) >= ends[tp]:
                    left.discard(tp)
                    consumer.pause(tp)

    def _observe(self, record: Any) -> None:
        source = sequence = None
        for name, raw in record.headers or ():
            if name == "ce_source":
                source = raw.decode("utf-8", "replace")
            elif name == SEQUENCE_HEADER and raw.isdigit():
                sequence = int(raw)
        if source is not None and sequence is not None and sequence > self._last.get(source, 0):
            self._last[source] = sequence


def _key(tp: Any) -> str:
    return f"{tp.topic}:{tp.partition}"


_STORES: dict[Path, SequenceStore] = {}


def sequence_store(settings: Settings) -> SequenceStore:
    """The process's store for the feed these settings name."""
    feed = f"{settings.bootstrap}|{settings.topic_prefix}".encode()
    name = f"{settings.topic_prefix}-{hashlib.sha256(feed).hexdigest()[:12]}.json"
    path = settings.data_dir / "sequences" / name
    store = _STORES.get(path)
    if store is None:
        store = _STORES[path] = SequenceStore(path)
    return store
