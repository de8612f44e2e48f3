"""Topics for the benchmark: created ready to serve, deleted after each case run."""

from __future__ import annotations

__all__ = [
    "BENCH_MARK",
    "create_topics",
    "delete_topics",
    "first_group",
    "is_ours",
    "others_topics",
]

import asyncio
import logging
import time
from typing import Any

from disruptfeed._aiokafka import start_consumer_client
from disruptfeed.bench._errors import BenchError
from disruptfeed.settings import Settings
from disruptfeed.topics import TopicSpec, topic_specs
from disruptfeed.topics import create_topics as project_topics
from producers import FeedProducer
from schemas import EventBase

log = logging.getLogger(__name__)
_READY_TIMEOUT_S = 60.0

BENCH_MARK = "bench"
"""The first part of every prefix the bench gives its topics (``bench-<run id>-<case>-<run>``)."""


def is_ours(topic: str, prefix: str) -> bool:
    """Whether ``topic`` carries this run's ``prefix`` as a whole name part.

    The project's topics start with it (``<prefix>.<name>``, ``<prefix>-worker-...``); Quix
    names its internal topics after its consumer group, which holds the prefix after a
    separator. A prefix inside a longer word (``xbench-...``, ``<prefix>0``) is someone else's.
    """
    start = topic.find(prefix)
    while start != -1:
        end = start + len(prefix)
        before_ok = start == 0 or not topic[start - 1].isalnum()
        after_ok = end == len(topic) or topic[end] in ".-_"
        if before_ok and after_ok:
            return True
        start = topic.find(prefix, start + 1)
    return False


async def others_topics(settings: Settings) -> list[str]:
    """Topics on the cluster that look like the bench's own but that this run did not create."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**settings.client_kwargs())
    await admin.start()
    try:
        return sorted(t for t in await admin.list_topics() if is_ours(t, BENCH_MARK))
    finally:
        await admin.close()


async def first_group(settings: Settings, events: list[EventBase]) -> None:
    """Publish ``events`` idempotently, then read them in a consumer group and commit."""
    from aiokafka import AIOKafkaConsumer

    async with FeedProducer(settings) as producer:
        outcomes = await producer.publish_many(events)
    if not all(o.ok for o in outcomes):
        raise BenchError("the broker did not accept the warm-up events")
    consumer = AIOKafkaConsumer(
        *{settings.topic(type(e).topic_name) for e in events},
        **settings.client_kwargs(),
        group_id=f"{settings.topic_prefix}-group",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await start_consumer_client(consumer)
    try:
        # Records come only after the group is joined, which creates the offsets topic.
        if not await consumer.getmany(timeout_ms=60_000):
            raise BenchError("the warm-up consumer group received nothing in 60 s")
        await consumer.commit()
    finally:
        await consumer.stop()


async def create_topics(settings: Settings) -> None:
    """Create the project's topics, and return once every partition's leader answers.

    A broker may list a new partition's leader a moment before that leader serves it; the
    first requests would then fail and be retried inside the timed part of a case.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    specs = topic_specs(settings)
    await project_topics(settings, specs)
    admin = AIOKafkaAdminClient(**settings.client_kwargs())
    await admin.start()
    try:
        # First the broker's metadata must list every partition with a leader; asking a
        # client for offsets before that only makes it log "topic not found" and retry.
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while not _all_led(await admin.describe_topics([s.name for s in specs]), specs):
            if time.monotonic() > deadline:
                raise BenchError(f"the new topics {specs[0].name}, ... have no leaders yet")
            await asyncio.sleep(0.05)
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(**settings.client_kwargs(), enable_auto_commit=False)
    await start_consumer_client(consumer)
    try:
        # Then each leader must serve: ListOffsets goes to it, and aiokafka retries until so.
        await consumer.end_offsets(
            [TopicPartition(s.name, p) for s in specs for p in range(s.partitions)]
        )
    finally:
        await consumer.stop()


def _all_led(described: list[dict[str, Any]], specs: list[TopicSpec]) -> bool:
    wanted = {s.name: s.partitions for s in specs}
    ready = {
        t["topic"]
        for t in described
        if t["error_code"] == 0
        and len(t["partitions"]) == wanted.get(t["topic"])
        and all(p["leader"] >= 0 for p in t["partitions"])
    }
    return ready == set(wanted)


async def delete_topics(settings: Settings, prefix: str) -> None:
    """Delete every topic that carries ``prefix`` (:func:`is_ours`); a failure is only logged."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    admin = AIOKafkaAdminClient(**settings.client_kwargs())
    try:
        await admin.start()
        doomed = [t for t in await admin.list_topics() if is_ours(t, prefix)]
        if doomed:
            await admin.delete_topics(doomed)
    except (KafkaError, OSError) as exc:
        log.warning("could not delete the bench topics %s*: %s", prefix, exc)
    finally:
        await admin.close()
