"""The uses of Faust's private API: the current event of a table write, and a flush that flushes.

Faust has no public way to say which record a table write belongs to (it takes it from a
context variable that stream iteration sets per record), and ``take_events`` hands the agent a
batch. ``faust.streams._current_event`` is set here and nowhere else; faust-streaming is pinned
to 0.15.x in pyproject.toml for it, and tests/unit/test_compat.py fails if it moves.

Three defects of Faust's that cost counted events when a worker takes partitions over are fixed
on the worker's own app by :func:`apply_fixes` (tests/unit/test_faust_fixes.py and
test_restarts.py hold them to their cases): its producer buffer's flush returns with records
still queued (:func:`durable_flush`); after a rebalance it re-reads only partitions that have a
committed offset (:func:`seek_uncommitted_to_beginning`); and records it drops around that seek
are never handed over (filled from Kafka by :mod:`streams._holes`, then marked handled with
Faust's consumer's ``_add_gap`` so that the commit moves on).
"""

from __future__ import annotations

__all__ = ["apply_fixes", "as_current", "durable_flush", "seek_uncommitted_to_beginning"]

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

from faust import streams as faust_streams
from faust.types import TP

from streams._holes import Fill, read_range

log = logging.getLogger(__name__)


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


def durable_flush(buffer: Any) -> None:
    """Make ``buffer`` (a Faust ``ProducerBuffer``) flush every record it holds before returning.

    Faust commits source offsets after ``producer.flush()``, which flushes this buffer, then
    aiokafka's. The buffer's own flush gave up after 0.1 s without a send and returned with table
    rows still queued (a send waiting for metadata, a loop starved of CPU), and it never counted
    the record being handed over at that moment: the commit then ran ahead of the changelog, and
    a worker killed just after it lost rows whose records were never read again. This flush
    waits until the queue is empty and no hand-over is in flight; aiokafka's flush, next, waits
    for the acknowledgements. A buffer that stopped with records left raises, so the commit does
    not happen and the records are read again.
    """
    send_pending = buffer._send_pending
    in_flight = 0

    async def counted_send(fut: Any) -> None:
        nonlocal in_flight
        in_flight += 1
        try:
            await send_pending(fut)
        finally:
            in_flight -= 1

    async def flush() -> None:
        while buffer.size or in_flight:
            if buffer.should_stop or buffer.state != "running":
                left = buffer.size + in_flight
                raise RuntimeError(f"producer buffer stopped with {left} record(s) not sent")
            buffer.message_sent.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                # The timeout only re-checks the state; it never ends the wait.
                await asyncio.wait_for(buffer.message_sent.wait(), timeout=1.0)

    buffer._send_pending = counted_send
    buffer.flush = flush


def seek_uncommitted_to_beginning(
    consumer: Any, sources: Collection[str], starts: dict[str, int] | None = None
) -> None:
    """After a rebalance, re-read source partitions the group never committed from their start.

    Faust drops records fetched around a rebalance (flow stopped, generation changed, queues
    cleared) and relies on ``perform_seek`` to read them again from the committed offsets. But
    aiokafka's ``seek_to_committed`` moves only partitions whose committed offset is above 0: a
    partition with no commit kept the position after the dropped records, which were never
    counted. ``consumer`` is the thread behind the app's Faust consumer (``app.consumer._thread``,
    whose ``seek_to_committed`` Faust's calls); ``sources`` are the agent's topics (the tables'
    changelog partitions are Faust's to seek). ``starts`` gets, per source partition
    (``topic:partition``), the offset reading starts from after each seek.
    """
    seek_to_committed = consumer.seek_to_committed

    async def seek() -> Any:
        committed = await seek_to_committed()
        fresh = [tp for tp, offset in committed.items() if tp.topic in sources and not offset]
        begins: dict[Any, int] = {}
        if fresh:
            client = consumer._ensure_consumer()
            begins = await consumer.call_thread(_seek_to_start, client, fresh)
        if starts is not None:
            for tp, offset in committed.items():
                if tp.topic in sources and (offset or tp in begins):
                    starts[f"{tp.topic}:{tp.partition}"] = offset or begins[tp]
        return committed

    consumer.seek_to_committed = seek


async def _seek_to_start(client: Any, partitions: list[Any]) -> dict[Any, int]:
    # Not seek_to_beginning: that is a reset, leaving each partition without a position until
    # the broker answers, and Faust's livelock check reads every partition's position meanwhile;
    # aiokafka asserts there is one, and the worker crashed right after a rebalance.
    starts = await client.beginning_offsets(partitions)
    assigned = client.assignment()
    for tp, offset in starts.items():
        if tp in assigned:  # a rebalance while the broker answered may have taken it away
            client.seek(tp, offset)
    return dict(starts)


def apply_fixes(
    app: Any, sources: Collection[str], client_kwargs: Mapping[str, Any], starts: dict[str, int]
) -> Fill:
    """Fix the worker app's producer buffer and consumer; return how to fill a delivery hole.

    The fill reads a hole's records from Kafka (:mod:`streams._holes`), then tells Faust's
    consumer their offsets are handled, so that the group's commit moves past them. ``starts``
    is kept up to date with where each source partition's reading starts after a rebalance.
    """
    durable_flush(app.producer.buffer)
    seek_uncommitted_to_beginning(app.consumer._thread, sources, starts)

    async def fill(topic: str, partition: int, start: int, end: int) -> Sequence[Any]:
        for attempt in range(_FILL_ATTEMPTS):
            try:
                found = await read_range(client_kwargs, topic, partition, start, end)
                break
            except Exception as exc:
                if attempt == _FILL_ATTEMPTS - 1:
                    log.error("records %d..%d of %s:%d could not be read (%s); they are not "
                              "counted", start, end - 1, topic, partition, exc)  # fmt: skip
                    return []
                await asyncio.sleep(1.0 * 2**attempt)  # backoff between tries
        with contextlib.suppress(Exception):  # only the commit's progress depends on it
            await app.consumer._add_gap(TP(topic, partition), start, end - 1)
        return found

    return fill


_FILL_ATTEMPTS = 3
