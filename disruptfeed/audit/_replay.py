"""Replay a time range of the feed's history, for audits: complete, ordered, reproducible.

A replay reads the event topics from ``offsets_for_times(since - max future skew)``: a record's
Kafka timestamp is its publish time, which is never earlier than its event time by more than the
publishers' allowed clock skew, so no event of the range can sit before that offset. It reads up to
the end offsets captured when it starts (so it always terminates, whatever is published
meanwhile), committed data only, and keeps the events whose ``occurred_at`` is in
``[since, until)`` and that pass the filters. The output is ordered by event time, then event id,
and holds each event once, as the exact bytes stored: the same command over the same history
gives byte-identical output.
"""

from __future__ import annotations

__all__ = ["ReplayFilter", "ReplayResult", "ReplayedEvent", "replay"]

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from disruptfeed.errors import ConfigurationError, InvalidEventError
from disruptfeed.settings import Settings
from disruptfeed.topics import event_types_by_topic
from schemas import (
    ISO_3166_ALPHA2,
    UNKNOWN_REGION,
    AccountDisrupted,
    Event,
    NetworkIdentified,
    ReportReleased,
    codec,
)

Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class ReplayFilter:
    """What to replay: a half-open event-time range and optional type, region, network filters.

    Raises:
        ConfigurationError: a time without a timezone, ``until`` not after ``since``, or an
            unknown type or region, each with what to pass instead.
    """

    since: dt.datetime
    until: dt.datetime
    types: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    networks: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.since.tzinfo is None or self.until.tzinfo is None:
            raise ConfigurationError("--since and --until need a timezone, e.g. 2026-01-01T00:00Z")
        if self.until <= self.since:
            raise ConfigurationError(
                f"--until ({self.until.isoformat()}) must be after --since "
                f"({self.since.isoformat()})"
            )
        known = {"account.disrupted", "network.identified", "report.released"}
        if bad := sorted(set(self.types) - known):
            raise ConfigurationError(
                f"unknown event type {bad[0]!r}; use one of {', '.join(sorted(known))}"
            )
        regions = {*ISO_3166_ALPHA2, UNKNOWN_REGION}
        if bad := sorted(r for r in self.regions if r not in regions):
            raise ConfigurationError(
                f"unknown region {bad[0]!r}; use an ISO 3166-1 alpha-2 code such as RU, "
                "or 'unknown'"
            )

    def matches(self, event: Event) -> bool:
        """Whether ``event`` is in the range and passes every filter."""
        if not self.since <= event.occurred_at < self.until:
            return False
        if self.types and event.type not in self.types:
            return False
        if self.regions and event.region not in self.regions:
            return False
        return not self.networks or bool(set(_networks(event)) & set(self.networks))


def _networks(event: Event) -> tuple[str, ...]:
    if isinstance(event, AccountDisrupted | NetworkIdentified):
        return (event.network_id,)
    assert isinstance(event, ReportReleased)
    return event.networks


@dataclass(frozen=True, slots=True)
class ReplayedEvent:
    """One event of a replay: the validated event, its exact stored bytes, where it was."""

    event: Event
    value: bytes
    topic: str
    partition: int
    offset: int


@dataclass
class ReplayResult:
    """The replayed events (ordered) and what the read saw on the way."""

    events: list[ReplayedEvent] = field(default_factory=list)
    scanned: int = 0
    duplicates: int = 0
    invalid: list[tuple[str, int, int, str]] = field(default_factory=list)
    """(topic, partition, offset, reason) of records that are not valid events."""
    start_offsets: dict[str, int] = field(default_factory=dict)
    end_offsets: dict[str, int] = field(default_factory=dict)


async def replay(
    settings: Settings,
    spec: ReplayFilter,
    *,
    on_progress: Progress | None = None,
    on_total: Progress | None = None,
) -> ReplayResult:
    """Read the history for ``spec``; see the module docstring.

    Args:
        settings: where the feed is.
        spec: the range and filters.
        on_progress: called with the number of records read since the last call.
        on_total: called once, before reading, with the number of records the replay reads.

    Raises:
        BrokerNotRunningError: nothing answers at the bootstrap address.
        ConfigurationError: an event topic does not exist.
    """
    from aiokafka import TopicPartition

    from consumers._kafka import partitions_of, start_consumer

    wanted = {t for t, kind in event_types_by_topic(settings).items() if kind in spec.types}
    topics = sorted(wanted or event_types_by_topic(settings))
    result = ReplayResult()
    consumer = await start_consumer(settings, max_partition_fetch_bytes=4 * 1024 * 1024)
    try:
        parts = [
            TopicPartition(t, p)
            for t in topics
            for p in await partitions_of(consumer, t, settings.bootstrap)
        ]
        consumer.assign(parts)
        skew = dt.timedelta(seconds=settings.max_future_skew_seconds)
        start_ms = int((spec.since - skew).timestamp() * 1000)
        found = await consumer.offsets_for_times(dict.fromkeys(parts, max(start_ms, 0)))
        ends = await consumer.end_offsets(parts)
        starts: dict[Any, int] = {}
        for tp in parts:
            hit = found.get(tp)
            starts[tp] = hit.offset if hit is not None else ends[tp]
            consumer.seek(tp, starts[tp])
            result.start_offsets[f"{tp.topic}:{tp.partition}"] = starts[tp]
            result.end_offsets[f"{tp.topic}:{tp.partition}"] = ends[tp]
        if on_total is not None:
            on_total(sum(ends[tp] - starts[tp] for tp in parts))
        kept: dict[int, ReplayedEvent] = {}
        left = {tp for tp in parts if starts[tp] < ends[tp]}
        while left:
            batches = await consumer.getmany(*left, timeout_ms=1_000, max_records=5_000)
            read = 0
            for tp, records in batches.items():
                for record in records:
                    if record.offset >= ends[tp]:
                        break
                    read += 1
                    _keep(record, spec, kept, result)
            result.scanned += read
            if on_progress is not None and read:
                on_progress(read)
            left = {tp for tp in left if await consumer.position(tp) < ends[tp]}
    finally:
        await consumer.stop()
    result.events = sorted(kept.values(), key=lambda e: (e.event.occurred_at, e.event.event_id))
    return result


def _keep(
    record: Any, spec: ReplayFilter, kept: dict[int, ReplayedEvent], result: ReplayResult
) -> None:
    try:
        event = codec.decode_record(record.value, record.headers or ())
    except InvalidEventError as exc:
        result.invalid.append((record.topic, record.partition, record.offset, str(exc)))
        return
    if not spec.matches(event):
        return
    key = event.event_id.int
    if key in kept:
        result.duplicates += 1  # the first copy, by position, is the one kept
        return
    kept[key] = ReplayedEvent(event, record.value, record.topic, record.partition, record.offset)
