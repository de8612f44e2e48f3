"""Helpers for integration tests: read a project's topics back to the end, serve the API, the
alert rules the worker tests count against."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httpx
from aiohttp import web
from aiokafka import AIOKafkaConsumer

from consumers import Received, Subscription
from disruptfeed._aiokafka import start_consumer_client
from disruptfeed.settings import Settings
from schemas import EventBase

if TYPE_CHECKING:
    from consumers._dispatcher import Dispatcher


def ng_burst_rules(threshold: int = 5) -> str:
    """One critical threshold rule on NG account disruptions in 1 h, repeating daily."""
    return f"""
repeat_interval = "24h"

[[rule]]
name = "ng-burst"
kind = "threshold"
event_type = "account.disrupted"
window = "1h"
threshold = {threshold}
regions = ["NG"]
severity = "critical"
"""


@contextlib.asynccontextmanager
async def serving(
    settings: Settings, dispatcher: Dispatcher, *, shutdown_timeout: float = 60.0
) -> AsyncIterator[httpx.AsyncClient]:
    """The dispatcher's subscription API on a free port, and a client for it."""
    from consumers._api import build_app

    app = build_app(settings, dispatcher)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield client
    finally:
        await runner.cleanup()


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
    return [(r.key, r.value, dict(r.headers)) for r in await _records(settings, topic)]


async def dead_letters(settings: Settings) -> list[dict[str, bytes]]:
    """The headers of every record on the feed's dead-letter topic now."""
    from disruptfeed.topics import DEAD_LETTER

    return [headers for _, _, headers in await read_raw(settings, settings.topic(DEAD_LETTER))]


async def _records(settings: Settings, topic: str) -> list[Any]:
    """Every record on a topic now, as aiokafka's ConsumerRecords."""
    from aiokafka import TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, enable_auto_commit=False)
    await start_consumer_client(consumer)
    try:
        parts = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        end = await consumer.end_offsets(parts)
        out: list[Any] = []
        while any([await consumer.position(tp) < end[tp] for tp in parts]):
            for records in (await consumer.getmany(timeout_ms=1_000)).values():
                out += records
        return out
    finally:
        await consumer.stop()


async def takeover_dump(settings: Settings) -> str:
    """What a failed takeover left: the worker group's commits, its rows, and the source
    records whose events are in no row (see streams/_rows.py for the rows' shape)."""
    import orjson
    from aiokafka.admin import AIOKafkaAdminClient

    from disruptfeed.topics import EVENT_TOPICS

    group = f"{settings.topic_prefix}-worker"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap)
    await admin.start()
    try:
        commits = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    lines = ["committed: " + ", ".join(
        f"{tp.topic.removeprefix(settings.topic_prefix)}:{tp.partition}@{om.offset}"
        for tp, om in sorted(commits.items()))]  # fmt: skip
    in_rows: set[str] = set()
    for record in await _records(settings, f"{group}-events-changelog"):
        partition, offset = record.partition, record.offset
        row = orjson.loads(record.value) if record.value else None
        if isinstance(row, dict):
            if "events" in row:
                in_rows.update(str(e[0]) for e in row["events"])
            brief = {k: v for k, v in row.items() if k in ("offsets", "cuts")}
            lines.append(f"row {partition}@{offset}: {len(row.get('events', []))} events {brief}")
        else:
            lines.append(f"row {partition}@{offset}: tombstone")
    for name in EVENT_TOPICS:
        for record in await _records(settings, settings.topic(name)):
            partition, offset = record.partition, record.offset
            event = orjson.loads(record.value) if record.value else {}
            if event.get("event_id") not in in_rows:
                region = event.get("actor", {}).get("region")
                what = f"{event.get('event_id')} {region} {event.get('occurred_at')}"
                lines.append(f"in no row: {name}:{partition}@{offset} {what}")
    return "\n".join(lines)
