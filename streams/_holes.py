"""Records Faust never handed the agent: found by their offsets, read from Kafka directly.

Kafka's offsets within a partition are consecutive, and the worker's rows say the last offset it
accounted for in each source partition (:attr:`streams.Processor.replayed`). After a rebalance
Faust resumes the source partitions before it seeks them to the committed offsets; records
fetched in between are handed over and dropped again while its read position moves past them,
and it never reads them again (issue 13: 50 records of a partition taken over from a killed
worker were never counted, and the group's commit stuck before them). A record that arrives after
such a hole is preceded by the hole's records, read here with a consumer of our own, so the
agent counts them in order. Records the log itself no longer has (deleted by retention while no
worker read them, transaction markers) are simply not there: the worker goes on, saying so.
"""

from __future__ import annotations

__all__ = ["Fill", "fill_holes", "read_range"]

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final

log = logging.getLogger(__name__)

Fill = Callable[[str, int, int, int], Awaitable[Sequence[Any]]]
"""``fill(topic, partition, start, end)``: the records of offsets ``start`` up to ``end``."""

_READ_TIMEOUT_MS: Final = 30_000


async def fill_holes(
    replayed: Mapping[str, int],
    fill: Fill,
    batch: Sequence[Any],
    starts: Mapping[str, int] | None = None,
) -> Sequence[Any]:
    """``batch`` with the records of each hole before the record that follows it.

    ``replayed`` is the last offset handled per source (``topic:partition``), from the rows.
    A source not in it (nothing counted there yet) starts where the last rebalance's seek put
    it (``starts``: the committed offset, or the partition's first); a source in neither has
    no known position, so nothing before its first record counts as missing.
    """
    last: dict[str, int] = {}
    out: list[Any] | None = None
    starts = starts or {}
    for i, record in enumerate(batch):
        msg = record.message
        source = f"{msg.topic}:{msg.partition}"
        before = last.get(source, replayed.get(source))
        if before is None and source in starts:
            before = starts[source] - 1
        if before is not None and msg.offset > before + 1:
            found = await fill(msg.topic, msg.partition, before + 1, msg.offset)
            missing = msg.offset - before - 1
            if len(found) < missing:
                log.warning("%d of the records %d..%d of %s are no longer on the log (retention, "
                            "transaction markers); counted without them", missing - len(found),
                            before + 1, msg.offset - 1, source)  # fmt: skip
            log.info("records %d..%d of %s never reached the worker; read directly (%d)",
                     before + 1, msg.offset - 1, source, len(found))  # fmt: skip
            if out is None:
                out = list(batch[:i])
            out.extend(found)
        if out is not None:
            out.append(record)
        if before is None or msg.offset > before:
            last[source] = msg.offset
    return batch if out is None else out


class _Fetched:
    """A record read here, shaped like a Faust event: ``.message`` with Faust's fields."""

    __slots__ = ("__weakref__", "message")

    def __init__(self, record: Any) -> None:
        self.message = _Message(record)


class _Message:
    __slots__ = ("headers", "key", "offset", "partition", "timestamp", "topic", "value")

    def __init__(self, record: Any) -> None:
        self.topic, self.partition, self.offset = record.topic, record.partition, record.offset
        self.key, self.value = record.key, record.value
        self.headers = list(record.headers or [])
        self.timestamp = record.timestamp / 1000 if record.timestamp else None  # Faust: seconds


async def read_range(
    client_kwargs: Mapping[str, Any], topic: str, partition: int, start: int, end: int
) -> list[Any]:
    """The records of ``topic:partition`` from offset ``start`` up to ``end`` (excluded).

    Raises:
        TimeoutError: they did not all arrive within 30 s.
    """
    import asyncio

    from aiokafka import AIOKafkaConsumer, TopicPartition

    from disruptfeed._aiokafka import start_consumer_client, stop_client

    tp = TopicPartition(topic, partition)
    consumer = AIOKafkaConsumer(
        **client_kwargs, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await start_consumer_client(consumer)
    out: list[Any] = []
    try:
        consumer.assign([tp])
        consumer.seek(tp, start)
        async with asyncio.timeout(_READ_TIMEOUT_MS / 1000):
            # A start below the log's (retention) resets to its beginning: the position moves on.
            while await consumer.position(tp) < end:
                got = await consumer.getmany(tp, timeout_ms=1_000, max_records=end - start)
                out += [_Fetched(r) for r in got.get(tp, []) if start <= r.offset < end]
    finally:
        await stop_client(consumer)
    return out
