"""The typed subscriber client for downstream services.

    async with Subscription([AccountDisrupted], group_id="my-service", start="earliest") as sub:
        async for received in sub:
            handle(received.event)

Delivery is at-least-once: an offset is committed only after the loop body that received the
event has finished (when the iterator is asked for the next one), and pending commits are flushed
on exit (call :meth:`Subscription.commit` before a ``break`` to include the event in hand).
A record that cannot be decoded is handed to ``on_invalid`` and skipped, never raised, so
one bad record cannot stop a service. Events whose id was already delivered in this subscription
are skipped (``dedupe_window`` ids remembered), because the event id is the idempotency key.
"""

from __future__ import annotations

__all__ = ["Received", "Start", "Subscription", "subscribe"]

import asyncio
import datetime as dt
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self
from uuid import UUID

from disruptfeed._aiokafka import cluster_metadata, start_consumer_client, stop_client
from disruptfeed._security import connect_failure
from disruptfeed.errors import ConfigurationError, InvalidEventError
from disruptfeed.settings import Settings, get_settings
from disruptfeed.topics import EVENT_TOPICS
from schemas import Event, EventBase, codec

log = logging.getLogger(__name__)

Start = Literal["earliest", "latest"] | dt.datetime
"""Where a subscription starts when its group has no committed offset: an end, or a time."""

InvalidHandler = Callable[["InvalidRecord"], None]


@dataclass(frozen=True, slots=True)
class Received:
    """A validated event and where it was read from."""

    event: Event
    topic: str
    partition: int
    offset: int
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class InvalidRecord:
    """A record that failed to decode, with its position and the reason."""

    topic: str
    partition: int
    offset: int
    error: InvalidEventError


def _log_invalid(record: InvalidRecord) -> None:
    log.warning(
        "skipping invalid record %s[%d]@%d: %s",
        record.topic,
        record.partition,
        record.offset,
        record.error,
    )


def _resolve_topics(settings: Settings, topics: Sequence[str | type[EventBase]]) -> list[str]:
    names = topics or EVENT_TOPICS
    full = []
    for item in names:
        name = item.topic_name if isinstance(item, type) else item
        full.append(name if name.startswith(settings.topic_prefix + ".") else settings.topic(name))
    return full


class Subscription:
    """An async iterator of validated events from one or more of the project's topics.

    Args:
        topics: event classes, logical topic names (``"account-disrupted"``) or full names;
            empty means every event topic.
        settings: connection settings; the process-wide ones by default.
        group_id: consumer group. ``None`` reads every partition without a group and commits
            nothing (for tools such as ``tail``).
        start: where to begin without a committed offset: ``"earliest"``, ``"latest"`` or a
            timezone-aware time (the first record appended at or after it).
        stop_at_end: stop once the end offsets seen at start are reached (needs no group).
        dedupe_window: how many recent event ids to remember for skipping duplicates (0: off).
        on_invalid: called with each undecodable record; by default it is logged.
        commit_interval: seconds between offset commits while events flow.
        since: replay: only events whose ``occurred_at`` is at or after this time (reading
            starts at it less the publishers' allowed clock skew).
        until: replay: only events before this time, and stop at the end offsets seen at start
            (implies ``stop_at_end``; needs no group).
    """

    def __init__(
        self,
        topics: Sequence[str | type[EventBase]] = (),
        *,
        settings: Settings | None = None,
        group_id: str | None = None,
        start: Start = "latest",
        stop_at_end: bool = False,
        dedupe_window: int = 100_000,
        on_invalid: InvalidHandler = _log_invalid,
        commit_interval: float = 1.0,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> None:
        for name, when in (("since", since), ("until", until)):
            if when is not None and when.tzinfo is None:
                raise ValueError(f"{name} must be timezone-aware, e.g. 2026-01-01T00:00:00+00:00")
        if since is not None and until is not None and until <= since:
            raise ValueError("until must be after since")
        settings = settings or get_settings()
        if since is not None:
            start = since - dt.timedelta(seconds=settings.max_future_skew_seconds)
        elif until is not None:
            start = "earliest"
        if until is not None:
            stop_at_end = True
        if isinstance(start, dt.datetime) and start.tzinfo is None:
            raise ValueError("start time must be timezone-aware, e.g. 2026-01-01T00:00:00+00:00")
        if stop_at_end and group_id is not None:
            raise ValueError("stop_at_end reads whole partitions and needs group_id=None")
        self._settings = settings
        self._since = since
        self._until = until
        self._topics = _resolve_topics(self._settings, topics)
        self._group_id = group_id
        self._start = start
        self._stop_at_end = stop_at_end
        self._dedupe_window = dedupe_window
        self._seen: OrderedDict[UUID, None] = OrderedDict()
        self._on_invalid = on_invalid
        self._commit_interval = commit_interval
        self._consumer: Any = None
        self._end: dict[Any, int] = {}
        self._processed: dict[tuple[str, int], int] = {}
        self._in_hand: tuple[str, int, int] | None = None
        self.skipped_duplicates = 0
        self.skipped_invalid = 0

    @property
    def topics(self) -> list[str]:
        """The full topic names this subscription reads."""
        return list(self._topics)

    async def start(self) -> None:
        """Connect, join the group or assign partitions, and position at the start point."""
        from aiokafka import AIOKafkaConsumer, TopicPartition
        from aiokafka.errors import KafkaConnectionError

        reset = self._start if isinstance(self._start, str) else "earliest"
        consumer = AIOKafkaConsumer(
            **self._settings.client_kwargs(),
            group_id=self._group_id,
            enable_auto_commit=False,
            auto_offset_reset=reset,
            isolation_level="read_committed",
        )
        try:
            await start_consumer_client(consumer)
        except KafkaConnectionError as exc:
            await stop_client(consumer)
            raise await connect_failure(self._settings) from exc
        self._consumer = consumer
        try:
            await self._assign_or_subscribe(consumer, TopicPartition)
        except BaseException:
            self._consumer = None
            await stop_client(consumer)
            raise

    async def _assign_or_subscribe(self, consumer: Any, topic_partition: Any) -> None:
        # A fresh cluster snapshot: the client's cached metadata may not know new topics yet.
        cluster = await cluster_metadata(consumer)
        missing = [t for t in self._topics if t not in cluster.topics()]
        if missing:
            raise ConfigurationError(
                f"topic(s) {', '.join(missing)} do not exist at {self._settings.bootstrap}: "
                "create them with 'disruptfeed topics create'"
            )
        if self._group_id is None:
            parts = [
                topic_partition(t, p)
                for t in self._topics
                for p in sorted(cluster.partitions_for_topic(t) or ())
            ]
            # Positioned as assigned, with nothing awaited between: a partition assigned without
            # a position is reset by aiokafka in the background (see consumers._kafka.assign_at).
            offsets = await self._offsets(parts)
            consumer.assign(parts)
            for tp in parts:
                consumer.seek(tp, offsets[tp])
            if self._stop_at_end:
                self._end = {tp: off for tp, off in (await consumer.end_offsets(parts)).items()}
        else:
            seek = isinstance(self._start, dt.datetime)
            consumer.subscribe(self._topics, listener=_rebalance_listener(self, seek=seek))

    async def _position(self, parts: list[Any]) -> None:
        """Seek ``parts``, already assigned (by the group), to where :attr:`_start` says."""
        for tp, offset in (await self._offsets(parts)).items():
            self._consumer.seek(tp, offset)

    async def _offsets(self, parts: list[Any]) -> dict[Any, int]:
        """Where :attr:`_start` puts each of ``parts``: looked up in the foreground."""
        consumer = self._consumer
        if isinstance(self._start, dt.datetime):
            stamp = int(self._start.timestamp() * 1000)
            found = await consumer.offsets_for_times(dict.fromkeys(parts, stamp))
            ends = await consumer.end_offsets(parts)
            return {
                tp: hit.offset if (hit := found.get(tp)) is not None else ends[tp] for tp in parts
            }
        if not parts:
            return {}
        if self._start == "earliest":
            offsets: dict[Any, int] = await consumer.beginning_offsets(parts)
        else:
            offsets = await consumer.end_offsets(parts)
        return offsets

    async def stop(self) -> None:
        """Commit what was processed and disconnect."""
        if self._consumer is None:
            return
        consumer, self._consumer = self._consumer, None
        try:
            if self._group_id is not None:
                await self._commit(consumer)
        finally:
            await stop_client(consumer)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def __aiter__(self) -> AsyncIterator[Received]:
        return self._iterate()

    async def _at_end(self) -> bool:
        for tp, end in list(self._end.items()):
            if await self._consumer.position(tp) < end:
                return False
            del self._end[tp]  # done with this partition for good
        return True

    async def _iterate(self) -> AsyncIterator[Received]:
        if self._consumer is None:
            raise RuntimeError("Subscription is not started: use 'async with Subscription(...)'")
        loop = asyncio.get_running_loop()
        last_commit = loop.time()
        consumer = self._consumer
        while self._consumer is not None:
            if self._stop_at_end and await self._at_end():
                return
            batches = await consumer.getmany(timeout_ms=500, max_records=500)
            for records in batches.values():
                for record in records:
                    received = self._decode(record)
                    if received is not None:
                        self._in_hand = (record.topic, record.partition, record.offset)
                        yield received
                        self._in_hand = None
                    # Reaching here means the caller's loop body finished with the event.
                    self._processed[(record.topic, record.partition)] = record.offset + 1
            if self._group_id is not None and loop.time() - last_commit >= self._commit_interval:
                await self._commit(consumer)
                last_commit = loop.time()

    def _decode(self, record: Any) -> Received | None:
        try:
            event = codec.decode_record(record.value, record.headers or ())
        except InvalidEventError as exc:
            self.skipped_invalid += 1
            self._on_invalid(InvalidRecord(record.topic, record.partition, record.offset, exc))
            return None
        if (self._since is not None and event.occurred_at < self._since) or (
            self._until is not None and event.occurred_at >= self._until
        ):
            return None
        if self._dedupe_window:
            if event.event_id in self._seen:
                self.skipped_duplicates += 1
                return None
            self._seen[event.event_id] = None
            if len(self._seen) > self._dedupe_window:
                self._seen.popitem(last=False)
        return Received(event, record.topic, record.partition, record.offset, record.timestamp)

    async def commit(self) -> None:
        """Commit now, counting the event in hand as processed.

        Call it after handling an event you are about to ``break`` on: leaving the loop any other
        way leaves that event uncommitted, so it is delivered again (at-least-once).
        """
        if self._in_hand is not None:
            topic, partition, offset = self._in_hand
            self._processed[(topic, partition)] = offset + 1
            self._in_hand = None
        if self._consumer is not None and self._group_id is not None:
            await self._commit(self._consumer)

    async def _commit(self, consumer: Any) -> None:
        from aiokafka import TopicPartition
        from aiokafka.errors import CommitFailedError, IllegalStateError

        if not self._processed:
            return
        assigned = consumer.assignment()
        offsets = {
            tp: off
            for (t, p), off in self._processed.items()
            if (tp := TopicPartition(t, p)) in assigned
        }
        # Offsets of partitions a rebalance took away are dropped: committing them raised
        # IllegalStateError and stopped the subscriber. Their new owner re-reads from the last
        # commit, which is what at-least-once promises (and the revoke listener commits first).
        self._processed = {}
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            log.warning("offset commit failed after a rebalance: %s", exc)


def _rebalance_listener(subscription: Subscription, *, seek: bool) -> Any:
    from aiokafka import ConsumerRebalanceListener

    class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
        """Commits before partitions go; seeks new ones to the start time, once each."""

        def __init__(self) -> None:
            self._subscription = subscription
            self._done: set[Any] = set()

        async def on_partitions_revoked(self, revoked: Any) -> None:
            """Commit what was processed while the partitions are still ours."""
            consumer = self._subscription._consumer
            if consumer is not None:
                await self._subscription._commit(consumer)

        async def on_partitions_assigned(self, assigned: Any) -> None:
            """Position partitions not read yet that have no committed offset."""
            consumer = self._subscription._consumer
            if not seek or consumer is None:
                return
            fresh = []
            for tp in assigned:
                if tp in self._done:
                    continue
                self._done.add(tp)
                if await consumer.committed(tp) is None:
                    fresh.append(tp)
            if fresh:
                await self._subscription._position(fresh)

    return _Listener()


async def subscribe(
    *topics: str | type[EventBase],
    settings: Settings | None = None,
    group_id: str | None = None,
    start: Start = "latest",
    stop_at_end: bool = False,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> AsyncIterator[Event]:
    """Validated events as an async iterator; the short form of :class:`Subscription`.

    Example: ``async for event in subscribe(AccountDisrupted, group_id="x"): ...``; with
    ``since`` and ``until`` it replays that range of event time and then ends.

    See :class:`Subscription` for the arguments and the delivery guarantee.
    """
    async with Subscription(
        topics,
        settings=settings,
        group_id=group_id,
        start=start,
        stop_at_end=stop_at_end,
        since=since,
        until=until,
    ) as subscription:
        async for received in subscription:
            yield received.event
