"""Small aiokafka helpers the dispatcher and the subscription admin share."""

from __future__ import annotations

__all__ = ["leaders_known", "partitions_of", "read_to_end", "start_consumer", "start_producer"]

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from disruptfeed._aiokafka import cluster_metadata, start_consumer_client, start_producer_client
from disruptfeed._security import connect_failure
from disruptfeed.errors import ConfigurationError
from disruptfeed.settings import Settings


async def start_consumer(settings: Settings, **kwargs: Any) -> Any:
    """A started ``AIOKafkaConsumer`` with the project's connection settings.

    Raises:
        BrokerNotRunningError: nothing answers at the bootstrap address.
        ConnectionSecurityError: it answers, but not to the TLS/SASL settings.
    """
    from aiokafka import AIOKafkaConsumer
    from aiokafka.errors import KafkaConnectionError

    consumer = AIOKafkaConsumer(
        **settings.client_kwargs(),
        enable_auto_commit=kwargs.pop("enable_auto_commit", False),
        isolation_level="read_committed",
        **kwargs,
    )
    try:
        await start_consumer_client(consumer)  # stops it again on failure
    except KafkaConnectionError as exc:
        raise await connect_failure(settings) from exc
    return consumer


async def start_producer(settings: Settings) -> Any:
    """A started idempotent ``AIOKafkaProducer`` (acks=all) for the dispatcher's own topics."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaConnectionError

    producer = AIOKafkaProducer(
        **settings.client_kwargs(),
        acks="all",
        enable_idempotence=True,
        linger_ms=0,
        max_request_size=2 * 1024 * 1024,
    )
    try:
        await start_producer_client(producer)
    except KafkaConnectionError as exc:
        raise await connect_failure(settings) from exc
    return producer


async def partitions_of(
    consumer: Any, topic: str, bootstrap: str, wait_s: float = 5.0
) -> list[int]:
    """The partitions of ``topic`` as the cluster has them (never assumed from settings).

    A topic created a moment ago may be missing from a broker's metadata for a few hundred
    milliseconds, so a missing topic is looked up again for up to ``wait_s`` seconds.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        cluster = await cluster_metadata(consumer)
        parts = cluster.partitions_for_topic(topic)
        if parts or loop.time() >= deadline:
            break
        await asyncio.sleep(0.2)
    if not parts:
        raise ConfigurationError(
            f"topic {topic} does not exist at {bootstrap}: create it with "
            "'disruptfeed topics create'"
        )
    return sorted(parts)


async def leaders_known(consumer: Any, parts: list[Any], seconds: float = 30.0) -> None:
    """Wait (at most ``seconds``) until every partition in ``parts`` has a leader.

    A topic created a moment ago has none for a while: an offset lookup then fails with
    NotLeaderForPartition and aiokafka retries it in the background, past the consumer's
    ``stop()``, leaving a connection open. Past the deadline the read goes on as before.
    """
    loop = asyncio.get_running_loop()
    deadline, delay = loop.time() + seconds, 0.05
    while True:
        metadata = await cluster_metadata(consumer)
        leaders = [metadata.leader_for_partition(tp) for tp in parts]
        if all(leader is not None and leader >= 0 for leader in leaders):
            return
        if loop.time() > deadline:
            return
        await asyncio.sleep(delay)  # backoff between metadata requests
        delay = min(delay * 2, 1.0)


async def read_to_end(
    consumer: Any, topic: str, bootstrap: str, start: dict[int, int] | None = None
) -> AsyncIterator[Any]:
    """Every record of ``topic`` from ``start`` (default: the beginning) to its end as of now.

    Assigns the consumer to the topic's partitions; ends when each reaches the end offset it had
    when the read began, so it always terminates.
    """
    from aiokafka import TopicPartition

    parts = [TopicPartition(topic, p) for p in await partitions_of(consumer, topic, bootstrap)]
    await leaders_known(consumer, parts)
    consumer.assign(parts)
    if start is None:
        await consumer.seek_to_beginning(*parts)
    else:
        await consumer.seek_to_beginning(*[tp for tp in parts if tp.partition not in start])
        for tp in parts:
            if tp.partition in start:
                consumer.seek(tp, start[tp.partition])
    ends = await consumer.end_offsets(parts)
    while True:
        left = [tp for tp in parts if await consumer.position(tp) < ends[tp]]
        if not left:
            return
        batches = await consumer.getmany(*left, timeout_ms=1_000)
        for tp, records in batches.items():
            for record in records:
                if record.offset < ends[tp]:
                    yield record
