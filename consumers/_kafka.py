"""Small aiokafka helpers the dispatcher and the subscription admin share."""

from __future__ import annotations

__all__ = [
    "assign_at",
    "partitions_of",
    "read_to_end",
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


async def assign_at(
    consumer: Any, parts: list[Any], where: str = "beginning", start: dict[int, int] | None = None
) -> None:
    """Assign ``parts``, each at ``start[partition]`` or else its first offset (end: ``"end"``).

    The offsets are looked up before the assignment, where aiokafka retries NotLeaderForPartition
    (a topic created a moment ago) in the caller, and every partition is positioned in the same
    step as it is assigned. A partition assigned without a position is reset by the fetcher's
    background task instead, which logged NotLeaderForPartition, retried on its own schedule and
    left a connection open past ``stop()`` (test_api and test_http_security, in CI; a lookup
    after the assignment did not help, the fetcher started its own meanwhile).
    """
    start = start or {}
    rest = [tp for tp in parts if tp.partition not in start]
    offsets: dict[Any, int] = {}
    if rest:
        lookup = consumer.end_offsets if where == "end" else consumer.beginning_offsets
        offsets = await lookup(rest)
    consumer.assign(parts)
    for tp in parts:  # no await from the assignment to the last seek
        consumer.seek(tp, start[tp.partition] if tp.partition in start else offsets[tp])


async def read_to_end(
    consumer: Any, topic: str, bootstrap: str, start: dict[int, int] | None = None
) -> AsyncIterator[Any]:
    """Every record of ``topic`` from ``start`` (default: the beginning) to its end as of now.

    Assigns the consumer to the topic's partitions; ends when each reaches the end offset it had
    when the read began, so it always terminates.
    """
    from aiokafka import TopicPartition

    parts = [TopicPartition(topic, p) for p in await partitions_of(consumer, topic, bootstrap)]
    await assign_at(consumer, parts, start=start)
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
