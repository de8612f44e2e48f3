"""The dispatcher: alerts topic in, webhook and Alertmanager deliveries out, nothing lost.

For each alert record, every subscription whose filter matches gets a :class:`PendingDelivery`
with the next gap-free sequence number of that subscription. Pending deliveries and cursors are
written to the dispatch-state topic and acknowledged *before* the alert's offset is committed, so
a dispatcher killed at any point resumes every delivery, with the same ``webhook-id`` and
sequence. Each subscription has its own bounded queue and delivery task: a slow or dead endpoint
delays only itself, and a delivery that finds the queue full is parked (it is already durable)
and taken as the queue drains, never blocking the consumer. Every attempt is appended to the
delivery log; a delivery whose attempts run out goes to the delivery dead-letter topic; a 410
disables the subscription.

Run one dispatcher per feed: it reads every partition of the alerts topic (committing to its
group) and owns the state topic.
"""

from __future__ import annotations

__all__ = ["DispatchStats", "Dispatcher"]

import asyncio
import contextlib
import dataclasses
import datetime as dt
import heapq
import logging
import time
from collections import defaultdict, deque
from typing import Any, Final

import httpx
import orjson
from pydantic import ValidationError

from consumers._dispatch_state import Cursor, DispatchState, PendingDelivery, encode, firing_key
from consumers._kafka import (
    assign_at,
    partitions_of,
    read_to_end,
    start_consumer,
    start_producer,
)
from consumers._metrics import DeliveryMetrics
from consumers._registry import SubscriptionAdmin, SubscriptionRegistry
from consumers._webhooks import (
    AttemptResult,
    alertmanager_payload,
    attempt_delivery,
    jittered,
    webhook_body,
    webhook_id,
)
from disruptfeed._aiokafka import stop_client
from disruptfeed._metrics import LagMonitor
from disruptfeed.settings import Settings
from disruptfeed.topics import (
    ALERTS,
    DEAD_LETTER,
    DELIVERIES,
    DELIVERY_DEAD_LETTER,
    DISPATCH_STATE,
)
from schemas import (
    DLQ_CODE_HEADER,
    DLQ_ERROR_TYPE_HEADER,
    DLQ_OFFSET_HEADER,
    DLQ_PARTITION_HEADER,
    DLQ_REASON_HEADER,
    DLQ_TOPIC_HEADER,
    Alert,
    decode_alert,
)
from schemas._subscriptions import DeliveryAttempt, DeliveryOutcome, SubscriptionRecord

log = logging.getLogger(__name__)

_UNEXPECTED_BACKOFF_MS: Final = 1_000
"""How soon a delivery that failed in our own code (not the endpoint's) is tried again."""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _iso(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


@dataclasses.dataclass
class DispatchStats:
    """Counters for /health and the operator."""

    alerts_read: int = 0
    invalid_alerts: int = 0
    matched: int = 0
    delivered: int = 0
    failed_attempts: int = 0
    dead_lettered: int = 0
    dropped: int = 0
    pending: int = 0


class Dispatcher:
    """Delivers alerts to subscriptions; see the module docstring.

    Args:
        settings: the feed, and the webhook settings (timeouts, schedule, queue size).
        client: an httpx client to deliver with (tests pass one); by default one is made.
        group_id: the consumer group committing the alerts topic's offsets.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        client: httpx.AsyncClient | None = None,
        group_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.group_id = group_id or f"{settings.topic_prefix}-dispatcher"
        self.stats = DispatchStats()
        self.metrics = DeliveryMetrics()
        self.state = DispatchState()
        self.registry = SubscriptionRegistry(settings, on_change=self._on_change)
        self.admin: SubscriptionAdmin | None = None
        self.ready = asyncio.Event()
        self._client = client
        self._own_client = client is None
        self._producer: Any = None
        self._consumer: Any = None
        self._alerts_topic = settings.topic(ALERTS)
        self._next: dict[int, int] = {}
        self.lag = LagMonitor(settings, self.group_id, self.partitions)
        """The group's lag on the alerts topic, measured while :meth:`run` runs (/ready)."""
        self._heap: list[tuple[int, str]] = []
        self._wake = asyncio.Event()
        self._unacked: set[asyncio.Future[Any]] = set()
        self._queues: dict[str, asyncio.Queue[str]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._held: defaultdict[str, set[str]] = defaultdict(set)
        self._parked: defaultdict[str, deque[str]] = defaultdict(deque)
        """Deliveries due while their subscription's queue was full, taken as it drains."""
        self._backfill: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._invalid: list[tuple[int, Any, str]] = []
        """Undecodable alert records of the batch in hand, dead-lettered before its commit."""

    # --- life cycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load state and subscriptions, and position on the alerts topic."""
        from aiokafka import TopicPartition

        settings = self.settings
        self._producer = await start_producer(settings)
        loader = await start_consumer(settings)
        try:
            async for record in read_to_end(
                loader, settings.topic(DISPATCH_STATE), settings.bootstrap
            ):
                self.state.apply((record.key or b"").decode(), record.value)
        finally:
            await stop_client(loader)
        self.state.settle()
        await self.registry.start()
        self.admin = SubscriptionAdmin(settings, self.registry, self._producer)
        self._backfill = {
            sub_id
            for sub_id in self.registry.subscriptions
            if sub_id not in self.state.cursors or not self.state.cursors[sub_id].backfilled
        }
        consumer = await start_consumer(settings, group_id=self.group_id)
        self._consumer = consumer
        parts = [
            TopicPartition(self._alerts_topic, p)
            for p in await partitions_of(consumer, self._alerts_topic, settings.bootstrap)
        ]
        committed = {tp.partition: await consumer.committed(tp) for tp in parts}
        await assign_at(
            consumer, parts, start={p: at for p, at in committed.items() if at is not None}
        )
        for tp in parts:
            self._next[tp.partition] = await consumer.position(tp)
        if self._client is None:
            self._client = httpx.AsyncClient(
                follow_redirects=False,
                limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
            )
        for key, item in self.state.pending.items():
            self._push(item.due_ms, key)
        self.stats.pending = len(self.state.pending)
        log.info(
            "dispatcher ready: %d subscriptions, %d pending deliveries, alerts from %s",
            len(self.registry.subscriptions),
            len(self.state.pending),
            self._next,
        )

    async def run(self) -> None:
        """Consume alerts until cancelled (call :meth:`start` first)."""
        self._tasks = [
            asyncio.create_task(self._scheduler(), name="dispatch-scheduler"),
            asyncio.create_task(self._alertmanager_refresh(), name="alertmanager-refresh"),
            asyncio.create_task(self.lag.run(), name="lag-monitor"),
        ]
        self.ready.set()
        try:
            while True:
                if self._backfill:
                    await self._run_backfill()
                batches = await self._consumer.getmany(timeout_ms=300, max_records=500)
                if batches:
                    await self._consume(batches)
                for task in self._tasks:
                    if task.done():
                        task.result()  # a crashed helper task stops the dispatcher loudly
        finally:
            await self._shutdown_tasks()

    async def stop(self) -> None:
        """Close every client (after :meth:`run` was cancelled, or instead of it)."""
        await self._shutdown_tasks()
        for task in self._workers.values():
            task.cancel()
        for task in self._workers.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers.clear()
        await self.registry.stop()
        if self._unacked:  # outcomes and log entries not acknowledged yet
            await asyncio.gather(*self._unacked, return_exceptions=True)
        for closing in (self._consumer, self._producer):
            if closing is not None:
                await stop_client(closing)
        self._consumer = self._producer = None
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _shutdown_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    # --- matching --------------------------------------------------------------------------------

    async def _consume(self, batches: dict[Any, list[Any]]) -> None:
        writes: dict[str, bytes | None] = {}
        fresh: list[PendingDelivery] = []
        eligible = [
            s
            for s in self.registry.subscriptions.values()
            if s.state != "disabled" and s.id not in self._backfill
        ]
        for tp, records in batches.items():
            for record in records:
                self._match(tp.partition, record, eligible, writes, fresh)
                self._next[tp.partition] = record.offset + 1
                self.stats.alerts_read += 1
        await self._persist(writes)
        # Durable from here: delivery need not wait for the commit's round trip (an alert read
        # again after a crash in between is matched by its cursor and not delivered twice).
        for item in fresh:
            self._push(item.due_ms, item.key)
        await self._consumer.commit({tp: self._next[tp.partition] for tp in batches})

    def _match(
        self,
        partition: int,
        record: Any,
        subs: list[SubscriptionRecord],
        writes: dict[str, bytes | None],
        fresh: list[PendingDelivery],
        *,
        first_read: bool = True,
    ) -> None:
        """Match one alert record against ``subs``; an invalid one is dead-lettered, once.

        ``first_read`` is False for a backfill's scan, which reads again what the main loop
        has read (and dead-lettered) before.
        """
        try:
            alert = decode_alert(record.value or b"")
        except ValidationError as exc:
            if first_read:
                self.stats.invalid_alerts += 1
                self._invalid.append((partition, record, str(exc).splitlines()[0]))
            return
        alert_id = str(alert.alert_id)
        now = _now_ms()
        for sub in subs:
            if record.offset < sub.start_offsets.get(partition, 0) or not sub.filter.matches(alert):
                continue
            cursor = self.state.cursors.get(sub.id) or Cursor(subscription_id=sub.id)
            if cursor.matched(partition, record.offset, alert_id):
                continue
            cursor = cursor.advance(partition, record.offset, alert_id)
            item = PendingDelivery(
                subscription_id=sub.id,
                sequence=cursor.sequence,
                webhook_id=webhook_id(sub.id, alert.alert_id),
                alert=alert,
                partition=partition,
                offset=record.offset,
                created_ms=now,
                due_ms=now,
            )
            self.state.cursors[sub.id] = cursor
            self.state.pending[item.key] = item
            writes[item.key] = encode(item)
            writes[cursor.key] = encode(cursor)
            fresh.append(item)
            self.stats.matched += 1
        self.stats.pending = len(self.state.pending)

    async def _run_backfill(self) -> None:
        """Match subscriptions the main loop has not covered yet against the alerts already read.

        A subscription can appear after the main loop has read past its start (it was created
        while the dispatcher ran, or asks for every alert kept), so its alerts before the loop's
        position are read again for it alone.
        """
        subs = [s for sid in sorted(self._backfill) if (s := self.registry.subscriptions.get(sid))]
        self._backfill.clear()
        if not subs:
            return
        starts: dict[int, int] = {}
        for p, end in self._next.items():
            froms = [self._backfill_from(s, p) for s in subs]
            lo = min(froms)
            if lo < end:
                starts[p] = lo
        writes: dict[str, bytes | None] = {}
        fresh: list[PendingDelivery] = []
        if starts:
            await self._scan(starts, subs, writes, fresh)
        for sub in subs:
            cursor = self.state.cursors.get(sub.id) or Cursor(subscription_id=sub.id)
            done = cursor.model_copy(update={"backfilled": True})
            self.state.cursors[sub.id] = done
            writes[done.key] = encode(done)
        await self._persist(writes)
        for item in fresh:
            self._push(item.due_ms, item.key)
        log.info("backfilled %d subscription(s): %d deliveries", len(subs), len(fresh))

    async def _scan(
        self,
        starts: dict[int, int],
        subs: list[SubscriptionRecord],
        writes: dict[str, bytes | None],
        fresh: list[PendingDelivery],
    ) -> None:
        """Match ``subs`` against the alerts from ``starts`` up to the main loop's position."""
        from aiokafka import TopicPartition

        reader = await start_consumer(self.settings)
        try:
            parts = {p: TopicPartition(self._alerts_topic, p) for p in starts}
            reader.assign(list(parts.values()))
            for p, offset in starts.items():
                reader.seek(parts[p], offset)
            left = set(starts)
            while left:
                batches = await reader.getmany(*[parts[p] for p in left], timeout_ms=500)
                for tp, records in batches.items():
                    for record in records:
                        if record.offset >= self._next[tp.partition]:
                            break
                        wanted = [
                            s for s in subs if self._backfill_from(s, tp.partition) <= record.offset
                        ]
                        self._match(tp.partition, record, wanted, writes, fresh, first_read=False)
                left = {p for p in left if await reader.position(parts[p]) < self._next[p]}
        finally:
            await stop_client(reader)

    def _backfill_from(self, sub: SubscriptionRecord, partition: int) -> int:
        cursor = self.state.cursors.get(sub.id)
        seen = cursor.positions.get(partition, -1) if cursor else -1
        return max(sub.start_offsets.get(partition, 0), seen + 1)

    def _on_change(
        self, sub_id: str, old: SubscriptionRecord | None, new: SubscriptionRecord | None
    ) -> None:
        if new is None:
            worker = self._workers.pop(sub_id, None)
            if worker is not None:
                worker.cancel()
            self._queues.pop(sub_id, None)
            self._held.pop(sub_id, None)
            self._parked.pop(sub_id, None)
            for key in [k for k, p in self.state.pending.items() if p.subscription_id == sub_id]:
                self._push(0, key)  # the scheduler drops it
            return
        if old is None:
            self._backfill.add(sub_id)
        if new.state == "active" and self._held.get(sub_id):
            for key in self._held.pop(sub_id):
                self._push(0, key)

    # --- scheduling and delivery -----------------------------------------------------------------

    def _push(self, due_ms: int, key: str) -> None:
        heapq.heappush(self._heap, (due_ms, key))
        self._wake.set()

    async def _scheduler(self) -> None:
        while True:
            now = _now_ms()
            while self._heap and self._heap[0][0] <= now:
                _, key = heapq.heappop(self._heap)
                item = self.state.pending.get(key)
                if item is not None:
                    await self._offer(item)
            self._wake.clear()
            wait = (self._heap[0][0] - now) / 1000 if self._heap else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def _offer(self, item: PendingDelivery) -> None:
        sub = self.registry.subscriptions.get(item.subscription_id)
        if sub is None:
            await self._settle(item, "dropped", None, "subscription deleted")
            return
        if sub.state == "paused":
            self._held[sub.id].add(item.key)
            return
        if sub.state == "disabled":
            await self._settle(item, "dead-lettered", None, f"subscription {sub.state_reason}")
            return
        queue = self._queues.get(sub.id)
        if queue is None:
            queue = self._queues[sub.id] = asyncio.Queue(self.settings.webhook_queue_size)
            self._workers[sub.id] = asyncio.create_task(
                self._deliver_loop(sub.id, queue), name=f"deliver-{sub.id}"
            )
        try:
            queue.put_nowait(item.key)
        except asyncio.QueueFull:
            # Parked, not awaited: the consumer and the other subscriptions go on. The delivery
            # itself is already durable in the state topic.
            self._parked[sub.id].append(item.key)

    async def _deliver_loop(self, sub_id: str, queue: asyncio.Queue[str]) -> None:
        parked = self._parked[sub_id]
        while True:
            while parked and not queue.full():
                queue.put_nowait(parked.popleft())
            key = await queue.get()
            item = self.state.pending.get(key)
            sub = self.registry.subscriptions.get(sub_id)
            if item is None:
                continue
            if sub is None or sub.state != "active":
                await self._offer(item)
                continue
            try:
                await self._attempt(sub, item)
            except Exception:
                # Never let one delivery end the subscription's task; the state topic still has
                # the delivery, so it is retried on the schedule.
                log.exception("delivery %s to %s failed unexpectedly", item.webhook_id, sub_id)
                self._push(_now_ms() + _UNEXPECTED_BACKOFF_MS, key)

    def _body(self, sub: SubscriptionRecord, item: PendingDelivery) -> bytes:
        if sub.kind == "alertmanager":
            now = dt.datetime.now(dt.UTC)
            resend = self.settings.alertmanager_resend_seconds
            return orjson.dumps([alertmanager_payload(item.alert, now, resend)])
        return webhook_body(item.alert, sub.id, item.sequence, _iso(item.created_ms))

    async def _attempt(self, sub: SubscriptionRecord, item: PendingDelivery) -> None:
        assert self._client is not None
        body = self._body(sub, item)
        result = await attempt_delivery(
            self._client,
            sub,
            msg_id=item.webhook_id,
            sequence=item.sequence,
            body=body,
            seconds=self.settings.webhook_timeout,
            allow_private=self.settings.webhook_allow_private,
        )
        self.metrics.latency.observe(result.latency_ms / 1000)
        attempt = item.attempts + 1
        if result.ok:
            await self._settle(item, "delivered", result, None, body=body)
            return
        self.stats.failed_attempts += 1
        if result.gone:
            reason = f"disabled: the endpoint answered 410 Gone at {dt.datetime.now(dt.UTC):%c}"
            assert self.admin is not None
            await self.admin.set_state(sub.id, "disabled", reason)
            await self._settle(item, "dead-lettered", result, "endpoint answered 410 Gone", body)
            return
        delays = self.settings.retry_delays
        if attempt >= len(delays):
            why = f"{attempt} attempts failed; last: {result.error}"
            await self._settle(item, "dead-lettered", result, why, body)
            return
        delay = jittered(delays[attempt], self.settings.webhook_retry_jitter)
        delay = max(delay, min(result.retry_after or 0.0, 24 * 3600.0))
        due = _now_ms() + int(delay * 1000)
        retry = item.model_copy(
            update={"attempts": attempt, "due_ms": due, "last_error": result.error}
        )
        self.state.pending[item.key] = retry
        await self._persist({item.key: encode(retry)})
        self.metrics.count("retrying")
        await self._log(retry, "retrying", result, attempt, next_ms=due)
        self._push(due, item.key)

    async def _settle(
        self,
        item: PendingDelivery,
        outcome: DeliveryOutcome,
        result: AttemptResult | None,
        reason: str | None,
        body: bytes | None = None,
    ) -> None:
        """Record a delivery's final outcome and forget it (tombstone its pending record)."""
        writes: dict[str, bytes | None] = {item.key: None}
        sub_id = item.subscription_id
        sub = self.registry.subscriptions.get(sub_id)
        if outcome == "delivered":
            self.stats.delivered += 1
            if sub is not None and sub.kind == "alertmanager":
                fp = item.alert.fingerprint
                if item.alert.status == "firing":
                    self.state.firing.setdefault(sub_id, {})[fp] = item.alert
                    writes[firing_key(sub_id, fp)] = encode(item.alert)
                else:
                    self.state.firing.get(sub_id, {}).pop(fp, None)
                    writes[firing_key(sub_id, fp)] = None
        elif outcome == "dead-lettered":
            self.stats.dead_lettered += 1
            await self._producer.send_and_wait(
                self.settings.topic(DELIVERY_DEAD_LETTER),
                key=sub_id.encode(),
                value=body if body is not None else encode(item.alert),
                headers=[
                    (DLQ_REASON_HEADER, (reason or outcome).encode()),
                    ("dlq_subscription", sub_id.encode()),
                    ("dlq_alert_id", str(item.alert.alert_id).encode()),
                    ("dlq_attempts", str(item.attempts + (1 if result else 0)).encode()),
                    ("webhook-id", item.webhook_id.encode()),
                    ("webhook-sequence", str(item.sequence).encode()),
                ],
            )
            log.warning("delivery %s to %s dead-lettered: %s", item.webhook_id, sub_id, reason)
        else:
            self.stats.dropped += 1
        # Not awaited: the outcome is final, and waiting for two acknowledgements per delivery
        # capped one subscription at a few dozen deliveries a second. Should the process die
        # before they land, the pending record is still there and the alert goes again, with
        # the same webhook-id and sequence: at least once, as promised.
        topic = self.settings.topic(DISPATCH_STATE)
        for key, value in writes.items():
            self._track(await self._producer.send(topic, key=key.encode(), value=value))
        self.state.pending.pop(item.key, None)
        self.stats.pending = len(self.state.pending)
        self.metrics.count(outcome)
        attempts = item.attempts + (1 if result is not None else 0)
        error = reason if outcome != "delivered" else None
        await self._log(item, outcome, result, max(attempts, 1), error=error)

    def _track(self, sent: asyncio.Future[Any]) -> None:
        """Keep a write we do not wait for, and say so if it fails."""
        self._unacked.add(sent)
        sent.add_done_callback(self._acked)

    def _acked(self, sent: asyncio.Future[Any]) -> None:
        self._unacked.discard(sent)
        if not sent.cancelled() and sent.exception() is not None:
            log.error("a delivery record was not written: %s", sent.exception())

    async def _log(
        self,
        item: PendingDelivery,
        outcome: DeliveryOutcome,
        result: AttemptResult | None,
        attempt: int,
        *,
        next_ms: int | None = None,
        error: str | None = None,
    ) -> None:
        entry = DeliveryAttempt(
            subscription_id=item.subscription_id,
            alert_id=str(item.alert.alert_id),
            webhook_id=item.webhook_id,
            sequence=item.sequence,
            attempt=attempt,
            outcome=outcome,
            status_code=result.status_code if result else None,
            latency_ms=result.latency_ms if result else None,
            error=(result.error if result and result.error else error),
            next_attempt_at=_iso(next_ms) if next_ms is not None else None,
            at=dt.datetime.now(dt.UTC),
        )
        sent = await self._producer.send(
            self.settings.topic(DELIVERIES),
            key=item.subscription_id.encode(),
            value=entry.model_dump_json().encode(),
        )
        self._track(sent)

    async def _persist(self, writes: dict[str, bytes | None]) -> None:
        """Write state records (and dead letters) and wait until every one is acknowledged."""
        invalid, self._invalid = self._invalid, []
        for partition, record, reason in invalid:
            await self._dead_letter_alert(partition, record, reason)
        if not writes:
            return
        topic = self.settings.topic(DISPATCH_STATE)
        futures = [
            await self._producer.send(topic, key=key.encode(), value=value)
            for key, value in writes.items()
        ]
        await asyncio.gather(*futures)

    async def _dead_letter_alert(self, partition: int, record: Any, reason: str) -> None:
        log.warning("alert record %d@%d is invalid: %s", partition, record.offset, reason)
        await self._producer.send_and_wait(
            self.settings.topic(DEAD_LETTER),
            key=record.key,
            value=record.value or b"",
            headers=[
                (DLQ_REASON_HEADER, reason.encode()[:500]),
                (DLQ_TOPIC_HEADER, self._alerts_topic.encode()),
                (DLQ_PARTITION_HEADER, str(partition).encode()),
                (DLQ_OFFSET_HEADER, str(record.offset).encode()),
                (DLQ_ERROR_TYPE_HEADER, b"ValidationError"),
                (DLQ_CODE_HEADER, b"invalid-alert"),
            ],
        )

    # --- Alertmanager ----------------------------------------------------------------------------

    async def _alertmanager_refresh(self) -> None:
        """Re-post every firing alert to its Alertmanager before the last post's endsAt passes."""
        resend = self.settings.alertmanager_resend_seconds
        while True:
            await asyncio.sleep(resend)
            for sub_id, alerts in list(self.state.firing.items()):
                sub = self.registry.subscriptions.get(sub_id)
                if sub is None or sub.state != "active" or not alerts:
                    continue
                await self._repost(sub, list(alerts.values()))

    async def _repost(self, sub: SubscriptionRecord, alerts: list[Alert]) -> None:
        assert self._client is not None
        now = dt.datetime.now(dt.UTC)
        resend = self.settings.alertmanager_resend_seconds
        body = orjson.dumps([alertmanager_payload(a, now, resend) for a in alerts])
        result = await attempt_delivery(
            self._client,
            sub,
            msg_id="",
            sequence=0,
            body=body,
            seconds=self.settings.webhook_timeout,
            allow_private=self.settings.webhook_allow_private,
        )
        if not result.ok:
            log.warning("re-posting %d alerts to %s failed: %s", len(alerts), sub.id, result.error)

    def partitions(self) -> list[tuple[str, int]]:
        """The (topic, partition) pairs the dispatcher consumes and commits (the alerts topic)."""
        return [(self._alerts_topic, p) for p in sorted(self._next)]

    def health(self) -> dict[str, Any]:
        """What /health reports."""
        return {
            "status": "ok" if self.ready.is_set() else "starting",
            "subscriptions": len(self.registry.subscriptions),
            "alerts_position": {str(p): o for p, o in sorted(self._next.items())},
            **dataclasses.asdict(self.stats),
        }
