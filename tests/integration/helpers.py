"""Helpers for integration tests: read a project's topics back to the end."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer

from consumers import Received, Subscription
from disruptfeed._aiokafka import start_consumer_client
from disruptfeed.settings import Settings
from schemas import EventBase


async def read_all(settings: Settings, *topics: str | type[EventBase]) -> list[Received]:
    """Every record on the topics now, from the beginning, without a group or dedupe."""
    async with Subscription(
        topics, settings=settings, start="earliest", stop_at_end=True, dedupe_window=0
    ) as sub:
        return [received async for received in sub]


async def read_raw(
    settings: Settings, topic: str
) -> list[tuple[bytes | None, bytes | None, dict[str, bytes]]]:
    """Every record on a topic now: (key, value, headers)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, enable_auto_commit=False)
    await start_consumer_client(consumer)
    try:
        from aiokafka import TopicPartition

        parts = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        end = await consumer.end_offsets(parts)
        out = []

        async def behind() -> bool:
            return any([await consumer.position(tp) < end[tp] for tp in parts])

        while await behind():
            for records in (await consumer.getmany(timeout_ms=1_000)).values():
                out += [(r.key, r.value, dict(r.headers)) for r in records]
        return out
    finally:
        await consumer.stop()


async def dead_letters(settings: Settings) -> list[dict[str, bytes]]:
    """The headers of every record on the feed's dead-letter topic now."""
    from disruptfeed.topics import DEAD_LETTER

    return [headers for _, _, headers in await read_raw(settings, settings.topic(DEAD_LETTER))]
