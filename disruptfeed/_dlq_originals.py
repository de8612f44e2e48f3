"""Reading the originals that dead letters name but do not copy.

Two kinds of dead letter hold no value, only the original's position (``dlq_topic``,
``dlq_partition``, ``dlq_offset``) and size (``dlq_value_bytes``): an original too big to copy,
and a record whose handling failed in the worker (``handling-failed``, dead-lettered by
reference). The original is still on its source topic until retention deletes it; a redrive
reads it from there and judges it like a copied one.
"""

from __future__ import annotations

__all__ = ["fetch_originals"]

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import Any

from disruptfeed._dlq import DeadLetterRecord
from disruptfeed.settings import Settings
from disruptfeed.topics import event_types_by_topic

_READ_TIMEOUT_S = 30.0
"""How long one original may take to arrive before it is reported as unreadable."""


async def fetch_originals(
    settings: Settings, records: Sequence[DeadLetterRecord], reasons: Sequence[str] = ()
) -> list[DeadLetterRecord]:
    """``records``, each dead letter that names an original on an event topic given it.

    Such a dead letter (matching ``reasons``, and not redriven before) gets
    :attr:`~DeadLetterRecord.original` (the value and headers read from its source position)
    or :attr:`~DeadLetterRecord.missing` (why it could not be read: deleted by retention, or
    not there). Every other record is returned unchanged, in order.
    """
    from aiokafka import TopicPartition

    from consumers._kafka import assign_at, start_consumer
    from disruptfeed._aiokafka import stop_client

    topics = event_types_by_topic(settings)
    redriven = {r.redrive_of for r in records if r.redrive_of is not None}
    wanted = [
        r
        for r in records
        if not r.is_marker
        and not r.copied
        and r.position not in redriven
        and r.matches(reasons)
        and r.source_topic in topics
        and r.source_partition is not None
        and r.source_offset is not None
    ]
    if not wanted:
        return list(records)
    parts = sorted({TopicPartition(r.source_topic, r.source_partition) for r in wanted})
    found: dict[str, DeadLetterRecord] = {}
    consumer = await start_consumer(settings, max_partition_fetch_bytes=2 * 1024 * 1024)
    try:
        firsts = await consumer.beginning_offsets(parts)
        ends = await consumer.end_offsets(parts)
        await assign_at(consumer, parts, start={tp.partition: firsts[tp] for tp in parts})
        for letter in wanted:
            tp = TopicPartition(letter.source_topic, letter.source_partition)
            found[letter.position] = await _read_one(consumer, tp, letter, firsts[tp], ends[tp])
    finally:
        await stop_client(consumer)
    return [found.get(r.position, r) for r in records]


async def _read_one(
    consumer: Any, tp: Any, letter: DeadLetterRecord, first: int, end: int
) -> DeadLetterRecord:
    offset = letter.source_offset
    assert offset is not None
    if not first <= offset < end:
        why = (
            f"the original is no longer on {letter.source} (the partition holds offsets "
            f"{first} to {end - 1}): retention deleted it, or it was never there"
            if end > first
            else f"the original is no longer on {letter.source} (the partition is empty)"
        )
        return dataclasses.replace(letter, missing=why)
    consumer.seek(tp, offset)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _READ_TIMEOUT_S
    while loop.time() < deadline:
        records = (await consumer.getmany(tp, timeout_ms=1_000, max_records=1)).get(tp, [])
        if not records:
            continue
        if records[0].offset == offset:
            original = (records[0].value, tuple(records[0].headers or ()))
            return dataclasses.replace(letter, original=original)
        break  # the next record came instead: compacted away, or an aborted transaction's
    return dataclasses.replace(letter, missing=f"the original at {letter.source} could not be read")
