"""The typed async producer: validated events in, acknowledged records out.

Settings that matter, and why:
- ``enable_idempotence=True`` with ``acks="all"``: a retried send never appends a record twice,
  and an acknowledged record survives a broker restart.
- ``compression_type`` (lz4 by default) and ``linger_ms`` (20 ms): JSON compresses about 3x, and
  a short linger fills batches under load at a latency cost far below the alerting budget.
- ``max_batch_size`` 256 KiB: several hundred events of 300-600 bytes travel per request.

Every record also carries its source's gap-free sequence number and, unless ``sign_events`` is
off, the publisher's Ed25519 signature (see :mod:`schemas._provenance` and
:mod:`producers._sequence`).
"""

from __future__ import annotations

__all__ = ["FeedProducer", "PublishOutcome"]

import asyncio
import base64
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self
from uuid import UUID

from disruptfeed._aiokafka import (
    start_consumer_client,
    start_producer_client,
    stop_producer_within,
)
from disruptfeed._keys import SigningKey, load_signing_key
from disruptfeed._security import connect_failure
from disruptfeed.errors import (
    DeliveryTimeoutError,
    DisruptFeedError,
    PublishError,
)
from disruptfeed.settings import Settings, get_settings
from disruptfeed.topics import topic_for
from producers._sequence import SequenceStore, sequence_store
from producers._skew import too_far_ahead
from schemas import EventBase, codec
from schemas._provenance import KEY_ID_HEADER, SEQUENCE_HEADER, SIGNATURE_HEADER, signed_message

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PublishOutcome:
    """What happened to one event handed to :meth:`FeedProducer.publish_many`."""

    event_id: UUID
    topic: str
    partition: int | None = None
    offset: int | None = None
    error: DisruptFeedError | None = None
    duplicate: bool = False

    @property
    def ok(self) -> bool:
        """True when the broker acknowledged the record (or it was a skipped duplicate)."""
        return self.error is None


class FeedProducer:
    """Publishes typed events as CloudEvents records on the project's topics.

    Use as an async context manager::

        async with FeedProducer() as producer:
            await producer.publish(event)
    """

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        self._settings = settings or get_settings()
        self._overrides = overrides
        self._producer: Any = None
        self._sequences: SequenceStore | None = None
        self._signer: SigningKey | None = None
        # Numbers are handed out and records enqueued under one lock, so two concurrent
        # publish_many calls cannot append a source's numbers out of order.
        self._send_lock = asyncio.Lock()

    @property
    def settings(self) -> Settings:
        """The settings this producer was built from."""
        return self._settings

    def client_config(self) -> dict[str, Any]:
        """The aiokafka producer configuration, documented in the module docstring."""
        s = self._settings
        return {
            **s.client_kwargs(),
            "acks": "all",
            "enable_idempotence": True,
            "compression_type": s.compression_type,
            "linger_ms": s.linger_ms,
            "max_batch_size": s.max_batch_size,
            **self._overrides,
        }

    async def start(self) -> None:
        """Connect to the broker.

        Raises:
            BrokerNotRunningError: nothing answers at the bootstrap address.
        ConnectionSecurityError: it answers, but not to the TLS/SASL settings.
            ConfigurationError: the signing key is unreadable, or another process publishes
                to this feed from the same data directory.
        """
        from aiokafka import AIOKafkaProducer
        from aiokafka.errors import KafkaConnectionError

        settings = self._settings
        signer = load_signing_key(settings, create=True, publisher=True)
        store = sequence_store(settings)
        store.acquire()
        producer = AIOKafkaProducer(**self.client_config())
        try:
            await start_producer_client(producer)
            await self._reconcile(store)
        except KafkaConnectionError as exc:
            await producer.stop()
            store.release()
            raise await connect_failure(settings) from exc
        except BaseException:
            await producer.stop()
            store.release()
            raise
        self._producer, self._sequences = producer, store
        self._signer = signer if settings.sign_events else None

    async def _reconcile(self, store: SequenceStore) -> None:
        from aiokafka import AIOKafkaConsumer

        if store.reconciled:
            return
        consumer = AIOKafkaConsumer(
            **self._settings.client_kwargs(),
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        await start_consumer_client(consumer)
        try:
            await store.reconcile(self._settings, consumer)
        finally:
            await consumer.stop()

    async def stop(self) -> None:
        """Flush what is pending and disconnect."""
        if self._producer is not None:
            producer, self._producer = self._producer, None
            try:
                # Whatever is still unacknowledged then was reported so by publish_many.
                if not await stop_producer_within(
                    producer, self._settings.delivery_timeout_seconds
                ):
                    log.warning("the broker did not take the last records before the deadline")
            finally:
                if self._sequences is not None:
                    self._sequences.release()
                    self._sequences = None

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

    def _require(self) -> Any:
        if self._producer is None:
            raise RuntimeError("FeedProducer is not started: use 'async with FeedProducer()'")
        return self._producer

    async def publish(self, event: EventBase) -> PublishOutcome:
        """Publish one event and wait for the broker's acknowledgement.

        Raises:
            PublishError: the broker did not acknowledge the record.
        """
        outcome = (await self.publish_many([event]))[0]
        if outcome.error is not None:
            raise outcome.error
        return outcome

    async def publish_many(self, events: Iterable[EventBase]) -> list[PublishOutcome]:
        """Publish a batch and report each event's outcome, in input order.

        Events are sent without waiting for each other, so they share broker requests; an event
        whose id already appeared in the batch is not sent again and is reported as a duplicate.
        A record the broker refuses after it was handed its sequence number leaves a gap in
        that source's numbers, which ``disruptfeed audit verify`` reports.
        """
        store = self._sequences
        assert store is not None
        settings = self._settings
        pending: list[tuple[UUID, str, asyncio.Future[Any] | PublishOutcome]] = []
        # The client retries for as long as the broker is away; the caller is told at a deadline.
        deadline = asyncio.get_running_loop().time() + settings.delivery_timeout_seconds
        batch = list(events)
        async with self._send_lock:
            try:
                async with asyncio.timeout_at(deadline):  # one timer for the batch, not one a send
                    await self._send_all(batch, pending)
            except TimeoutError:
                # The record being sent gave its number back in _send_all; the rest never began.
                for event in batch[len(pending) :]:
                    topic = topic_for(settings, event)
                    late = PublishOutcome(event.event_id, topic, error=_late(settings))
                    pending.append((event.event_id, topic, late))
        outcomes = await _acknowledged(pending, store, settings, deadline)
        store.save()
        return outcomes

    async def _send_all(
        self,
        events: list[EventBase],
        pending: list[tuple[UUID, str, asyncio.Future[Any] | PublishOutcome]],
    ) -> None:
        """Sign, number and hand each event to the client; one ``pending`` entry per event."""
        from aiokafka.errors import KafkaError

        # Keyed by UUID.int: UUID.__hash__ is Python code, and this loop is the producer's hot path.
        seen: set[int] = set()
        send = self._require().send
        store = self._sequences
        assert store is not None
        settings, signer = self._settings, self._signer
        key_id = signer.key_id.encode() if signer is not None else b""
        encode, key, headers = codec.encode, codec.key, codec.headers
        for event in events:
            event_id, topic = event.event_id, topic_for(settings, event)
            if event_id.int in seen:
                pending.append((event_id, topic, PublishOutcome(event_id, topic, duplicate=True)))
                continue
            seen.add(event_id.int)
            if (ahead := too_far_ahead(event, settings)) is not None:
                pending.append((event_id, topic, PublishOutcome(event_id, topic, error=ahead)))
                continue
            value, record_headers = encode(event), headers(event)
            # codec.headers order: specversion, id, source, type, ...
            _, (_, ce_id), (_, source), (_, ce_type), *_ = record_headers
            number = store.next(event.source)
            seq = str(number).encode()
            record_headers.append((SEQUENCE_HEADER, seq))
            if signer is not None:
                signature = signer.sign(signed_message(value, ce_id, ce_type, source, seq))
                record_headers.append((KEY_ID_HEADER, key_id))
                record_headers.append((SIGNATURE_HEADER, base64.b64encode(signature)))
            try:
                # The record timestamp stays the append time, so time-range lookups
                # (offsets_for_times) follow the log's order; event time is in the body.
                fut = await send(topic, value=value, key=key(event), headers=record_headers)
            except (KafkaError, asyncio.CancelledError) as exc:
                store.give_back(event.source, number)  # never enqueued: no gap
                if isinstance(exc, asyncio.CancelledError):
                    raise  # the batch's deadline (or a shutdown): the caller reports the rest
                pending.append((event_id, topic, PublishOutcome(event_id, topic, error=_wrap(exc))))
            else:
                pending.append((event_id, topic, fut))

    async def flush(self) -> None:
        """Wait until every record sent so far is acknowledged."""
        await self._require().flush()


async def _acknowledged(
    pending: list[tuple[UUID, str, asyncio.Future[Any] | PublishOutcome]],
    store: SequenceStore,
    settings: Settings,
    deadline: float,
) -> list[PublishOutcome]:
    """Each sent record's outcome, waiting for acknowledgements until ``deadline`` (loop time)."""
    from aiokafka.errors import KafkaError

    outcomes: list[PublishOutcome] = []
    try:
        async with asyncio.timeout_at(deadline):
            for event_id, topic, item in pending:
                if isinstance(item, PublishOutcome):
                    outcomes.append(item)
                    continue
                try:
                    # shield: the client keeps the record past the deadline; its future stays
                    # uncancelled for it.
                    meta = await asyncio.shield(item)
                except KafkaError as exc:
                    outcomes.append(PublishOutcome(event_id, topic, error=_wrap(exc)))
                else:
                    store.acknowledged(topic, meta.partition, meta.offset)
                    outcomes.append(PublishOutcome(event_id, topic, meta.partition, meta.offset))
    except TimeoutError:
        for event_id, topic, item in pending[len(outcomes) :]:
            late = item if isinstance(item, PublishOutcome) else None
            outcomes.append(late or PublishOutcome(event_id, topic, error=_late(settings)))
    return outcomes


def _late(settings: Settings) -> DeliveryTimeoutError:
    return DeliveryTimeoutError(
        f"not acknowledged within {settings.delivery_timeout_seconds:g} s "
        "(DISRUPTFEED_DELIVERY_TIMEOUT_SECONDS); is the broker up? Publishing it again is safe"
    )


def _wrap(exc: Exception) -> PublishError:
    error = PublishError(f"{type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error
