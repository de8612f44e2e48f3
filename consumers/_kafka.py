"""Small aiokafka helpers the dispatcher and the subscription admin share."""

from __future__ import annotations

__all__ = [
    "partitions_of",
    "read_to_end",
    "seek_to_offsets",
    "start_consumer",
    "start_producer",
]

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


async def seek_to_offsets(consumer: Any, parts: list[Any], where: str = "beginning") -> None:
    """Position each of the assigned ``parts`` at its first offset (or its end, ``where="end"``).

    The offsets are looked up in the foreground, where aiokafka retries NotLeaderForPartition (a
    topic created a moment ago) until its request timeout; ``seek_to_beginning`` instead leaves
    a reset to the fetcher's background task, which retried it past ``stop()`` and leaked its
    connection (test_api, in CI).
    """
    if not parts:
        return
    if where == "end":
        offsets = await consumer.end_offsets(parts)
    else:
        offsets = await consumer.beginning_offsets(parts)
    for tp in parts:
        consumer.seek(tp, offsets[tp])


async def read_to_end(
    consumer: Any, topic: str, bootstrap: str, start: dict[int, int] | None = None
) -> AsyncIterator[Any]:
    """Every record of ``topic`` from ``start`` (default: the beginning) to its end as of now.

    Assigns the consumer to the topic's partitions; ends when each reaches the end offset it had
    when the read began, so it always terminates.
    """
    from aiokafka import TopicPartition

    parts = [TopicPartition(topic, p) for p in await partitions_of(consumer, topic, bootstrap)]
    consumer.assign(parts)
    start = start or {}
    await seek_to_offsets(consumer, [tp for tp in parts if tp.partition not in start])
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
