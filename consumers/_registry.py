"""Subscriptions: the registry that follows the compacted topic, and the admin that changes it.

The subscriptions topic is the only database: its latest record per subscription id is the
subscription, a tombstone deletes it. :class:`SubscriptionRegistry` loads the topic and keeps
following it, so every dispatcher sees a change within about a second. :class:`SubscriptionAdmin`
creates and changes subscriptions for the CLI and the HTTP API.
"""

from __future__ import annotations

__all__ = ["Change", "SubscriptionAdmin", "SubscriptionRegistry"]

import asyncio
import contextlib
import datetime as dt
import logging
import secrets
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

from pydantic import ValidationError

from consumers._kafka import partitions_of, read_to_end, start_consumer, start_producer
from consumers._webhooks import check_endpoint, new_secret
from disruptfeed._aiokafka import stop_client
from disruptfeed.errors import NotFoundError
from disruptfeed.settings import Settings
from disruptfeed.topics import ALERTS, DELIVERIES, SUBSCRIPTIONS
from schemas._subscriptions import (
    AlertFilter,
    DeliveryAttempt,
    SubscriptionKind,
    SubscriptionRecord,
    SubscriptionState,
)

log = logging.getLogger(__name__)

Change = Callable[[str, SubscriptionRecord | None, SubscriptionRecord | None], None]
"""Called with (id, old, new) for every change the registry sees; None is "absent"."""

ROTATION_GRACE = dt.timedelta(hours=24)
"""How long a rotated-out secret still signs deliveries, so receivers can switch over."""


class SubscriptionRegistry:
    """The current subscriptions, read from the compacted topic and kept up to date."""

    def __init__(self, settings: Settings, on_change: Change | None = None) -> None:
        self._settings = settings
        self._topic = settings.topic(SUBSCRIPTIONS)
        self._on_change = on_change
        self._consumer: Any = None
        self._lock = asyncio.Lock()
        self._follow: asyncio.Task[None] | None = None
        self.subscriptions: dict[str, SubscriptionRecord] = {}

    async def start(self, *, follow: bool = True) -> None:
        """Load every subscription; with ``follow``, keep applying changes in the background."""
        self._consumer = await start_consumer(self._settings)
        async with self._lock:
            async for record in read_to_end(self._consumer, self._topic, self._settings.bootstrap):
                self._apply(record)
        if follow:
            self._follow = asyncio.create_task(self._following(), name="subscriptions-follow")

    async def stop(self) -> None:
        """Stop following and close the consumer."""
        if self._follow is not None:
            self._follow.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follow
            self._follow = None
        if self._consumer is not None:
            await stop_client(self._consumer)
            self._consumer = None

    async def sync(self) -> None:
        """Apply every change written before now (read-your-writes for callers that need it)."""
        async with self._lock:
            consumer = self._consumer
            parts = sorted(consumer.assignment(), key=lambda tp: tp.partition)
            ends = await consumer.end_offsets(parts)
            while any([await consumer.position(tp) < ends[tp] for tp in parts]):
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    for record in records:
                        self._apply(record)

    def apply_local(self, record: SubscriptionRecord) -> None:
        """Take a record this process has just written, before it comes back from the topic."""
        self._store(record.id, record)

    def remove_local(self, sub_id: str) -> None:
        """Forget a subscription this process has just deleted."""
        self._store(sub_id, None)

    async def _following(self) -> None:
        while True:
            async with self._lock:
                batches = await self._consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    self._apply(record)
            if not batches:
                await asyncio.sleep(0.3)  # between polls, let sync() take the lock

    def _apply(self, record: Any) -> None:
        key = (record.key or b"").decode(errors="replace")
        if record.value is None:
            self._store(key, None)
            return
        try:
            self._store(key, SubscriptionRecord.model_validate_json(record.value))
        except ValidationError as exc:
            # Field names and reasons only: the input may hold a signing secret.
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                for e in exc.errors(include_url=False, include_input=False)
            )
            log.warning(
                "skipping invalid subscription record at offset %d: %s", record.offset, problems
            )

    def _store(self, key: str, new: SubscriptionRecord | None) -> None:
        old = self.subscriptions.get(key)
        if new is None:
            self.subscriptions.pop(key, None)
        else:
            if old is not None and old.updated_at > new.updated_at:
                return  # our own newer local write; the topic's older copy arrives late
            self.subscriptions[key] = new
        if old != new and self._on_change is not None:
            self._on_change(key, old, new)


class SubscriptionAdmin:
    """Create, change and inspect subscriptions (the CLI's and the HTTP API's control plane).

    Args:
        settings: where the feed is.
        registry: a running registry to share (the dispatcher's); by default one is loaded.
        producer: a started producer to share; by default one is started.
    """

    def __init__(
        self,
        settings: Settings,
        registry: SubscriptionRegistry | None = None,
        producer: Any = None,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._producer = producer
        self._owned: list[Any] = []

    async def __aenter__(self) -> Self:
        if self._registry is None:
            self._registry = SubscriptionRegistry(self._settings)
            await self._registry.start(follow=False)
            self._owned.append(self._registry)
        if self._producer is None:
            self._producer = await start_producer(self._settings)
            self._owned.append(self._producer)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for owned in reversed(self._owned):
            await owned.stop()
        self._owned.clear()

    @property
    def registry(self) -> SubscriptionRegistry:
        """The registry this admin reads."""
        assert self._registry is not None, "use SubscriptionAdmin as an async context manager"
        return self._registry

    def all(self) -> list[SubscriptionRecord]:
        """Every subscription, oldest first."""
        return sorted(self.registry.subscriptions.values(), key=lambda s: (s.created_at, s.id))

    def get(self, sub_id: str) -> SubscriptionRecord:
        """One subscription.

        Raises:
            NotFoundError: no subscription has that id.
        """
        found = self.registry.subscriptions.get(sub_id)
        if found is None:
            raise NotFoundError(
                f"no subscription {sub_id!r}; 'disruptfeed subscriptions list' shows them"
            )
        return found

    async def create(
        self,
        url: str,
        *,
        kind: SubscriptionKind = "webhook",
        filter: AlertFilter | None = None,
        description: str = "",
        from_beginning: bool = False,
    ) -> tuple[SubscriptionRecord, str | None]:
        """Create a subscription; returns it and its signing secret (webhooks), shown only now.

        It gets the alerts published from now on, or every alert kept with ``from_beginning``.

        Raises:
            EndpointRefusedError: the URL resolves to an address deliveries must not reach.
            pydantic.ValidationError: the URL or the filter is malformed.
        """
        now = dt.datetime.now(dt.UTC)
        secret = new_secret() if kind == "webhook" else None
        record = SubscriptionRecord(  # validates the URL's form before anything is resolved
            id="sub_" + secrets.token_hex(12),
            kind=kind,
            url=url,
            description=description,
            filter=filter or AlertFilter(),
            secret=secret,
            created_at=now,
            updated_at=now,
        )
        await check_endpoint(url, allow_private=self._settings.webhook_allow_private)
        if not from_beginning:
            offsets = await self._alert_end_offsets()
            record = record.model_copy(update={"start_offsets": offsets})
        await self.put(record)
        return record, secret

    async def set_state(
        self, sub_id: str, state: SubscriptionState, reason: str | None = None
    ) -> SubscriptionRecord:
        """Pause, resume or disable a subscription (paused ones keep their deliveries for later)."""
        current = self.get(sub_id)
        return await self.put(self._changed(current, state=state, state_reason=reason))

    async def rotate_secret(self, sub_id: str) -> tuple[SubscriptionRecord, str]:
        """A new signing secret; the old one also signs deliveries for 24 hours more."""
        current = self.get(sub_id)
        if current.kind != "webhook":
            raise NotFoundError(f"subscription {sub_id} is an Alertmanager one and has no secret")
        secret = new_secret()
        now = dt.datetime.now(dt.UTC)
        record = self._changed(
            current,
            secret=secret,
            previous_secret=current.secret,
            previous_secret_until=now + ROTATION_GRACE,
        )
        return await self.put(record), secret

    async def delete(self, sub_id: str) -> None:
        """Delete a subscription (a tombstone); its pending deliveries are dropped."""
        self.get(sub_id)
        await self._producer.send_and_wait(
            self._settings.topic(SUBSCRIPTIONS), key=sub_id.encode(), value=None
        )
        self.registry.remove_local(sub_id)

    async def put(self, record: SubscriptionRecord) -> SubscriptionRecord:
        """Write a subscription record and wait for the broker's acknowledgement."""
        await self._producer.send_and_wait(
            self._settings.topic(SUBSCRIPTIONS),
            key=record.id.encode(),
            value=record.model_dump_json().encode(),
        )
        self.registry.apply_local(record)
        return record

    async def deliveries(self, sub_id: str, limit: int = 20) -> list[DeliveryAttempt]:
        """The last ``limit`` delivery attempts of a subscription, oldest first."""
        self.get(sub_id)
        if self._producer is not None:
            # A dispatcher's admin shares its producer, which does not wait for log entries:
            # what it has written so far is in the answer.
            await self._producer.flush()
        found: list[DeliveryAttempt] = []
        consumer = await start_consumer(self._settings)
        try:
            topic = self._settings.topic(DELIVERIES)
            async for record in read_to_end(consumer, topic, self._settings.bootstrap):
                if record.key == sub_id.encode() and record.value:
                    with contextlib.suppress(ValidationError):
                        found.append(DeliveryAttempt.model_validate_json(record.value))
        finally:
            await stop_client(consumer)
        found.sort(key=lambda a: a.at)
        return found[-limit:] if limit else found

    def _changed(self, current: SubscriptionRecord, **changes: Any) -> SubscriptionRecord:
        now = dt.datetime.now(dt.UTC)
        return current.model_copy(update={**changes, "updated_at": max(now, current.updated_at)})

    async def _alert_end_offsets(self) -> dict[int, int]:
        from aiokafka import TopicPartition

        consumer = await start_consumer(self._settings)
        try:
            topic = self._settings.topic(ALERTS)
            parts = await partitions_of(consumer, topic, self._settings.bootstrap)
            ends = await consumer.end_offsets([TopicPartition(topic, p) for p in parts])
            return {tp.partition: offset for tp, offset in ends.items()}
        finally:
            await stop_client(consumer)
