"""The broker is SIGKILLed and restarted while 'disruptfeed publish' sends 50,000 events."""

from __future__ import annotations

import asyncio
import collections
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from disruptfeed.broker import LocalBroker, free_port
from disruptfeed.cli._common import EXIT_BROKER
from disruptfeed.settings import Settings
from disruptfeed.topics import create_topics
from schemas import AccountDisrupted, codec
from tests.factories import account
from tests.integration.helpers import read_all
from tests.integration.worker import POLL_SECONDS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EVENTS = 50_000
REGIONS = ("RU", "CN", "IR", "KP", "KH", "US", "NG", "BR", "IN")


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """A broker of this test's own, since it is killed (ports from bind(0))."""
    base = Settings()
    broker = LocalBroker(
        Settings(data_dir=tmp_path, cache_dir=base.cache_dir),
        data_dir=tmp_path / "broker",
        port=free_port(),
        controller_port=free_port(),
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def _offsets_total(settings: Settings) -> int:
    async def total() -> int:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        from disruptfeed._aiokafka import start_consumer_client, stop_client

        consumer = AIOKafkaConsumer(**settings.client_kwargs())
        await start_consumer_client(consumer)
        try:
            topic = settings.topic(AccountDisrupted.topic_name)
            parts = [TopicPartition(topic, p) for p in range(settings.partitions)]
            return sum((await consumer.end_offsets(parts)).values())
        finally:
            await stop_client(consumer)

    return asyncio.run(total())


@pytest.mark.parametrize(
    ("outage_s", "deadline_s"),
    [(0, 120), (15, 120), (40, 8)],
    ids=["restart-at-once", "outage-15s", "outage-past-the-deadline"],
)
async def test_broker_killed_mid_publish_loses_no_acknowledged_event(
    own_broker: LocalBroker, tmp_path: Path, outage_s: float, deadline_s: float
) -> None:
    """Restarted at once, or after an outage 3x the request timeout: the client's retries carry
    every send through. Or after an outage past the delivery deadline: publish reports the lines
    not acknowledged (and those it did not send), exits 3, and publishing them again is safe."""
    settings = Settings(
        bootstrap_servers=own_broker.bootstrap_servers,
        topic_prefix=f"t-{uuid.uuid4().hex[:12]}",
        partitions=3,
        data_dir=tmp_path / "data",
        request_timeout_ms=5_000,  # so that some sends give up while the broker is down
    )
    await create_topics(settings)
    events = [account(REGIONS[i % len(REGIONS)], minutes=i / 60) for i in range(EVENTS)]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(codec.encode(e) + b"\n" for e in events))
    env = {
        **os.environ,
        "DISRUPTFEED_BOOTSTRAP_SERVERS": settings.bootstrap,
        "DISRUPTFEED_TOPIC_PREFIX": settings.topic_prefix,
        "DISRUPTFEED_DATA_DIR": str(settings.data_dir),
        "DISRUPTFEED_REQUEST_TIMEOUT_MS": "5000",
        "DISRUPTFEED_DELIVERY_TIMEOUT_SECONDS": str(deadline_s),
    }

    def publish(file: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "disruptfeed", "publish", "--chunk", "500", str(file)],
            capture_output=True, text=True, env=env, timeout=600, check=False,
        )  # fmt: skip

    def kill_mid_publish() -> None:
        deadline = time.monotonic() + 120
        while _offsets_total(settings) < EVENTS // 5:  # a fifth is in: mid-publish
            assert time.monotonic() < deadline, "publish did not start"
            time.sleep(POLL_SECONDS)  # the poll interval of this wait-for-condition
        own_broker.kill()
        # The outage is the fault injected, not a wait for a state: it lasts outage_s.
        time.sleep(outage_s)
        own_broker.start()

    task = asyncio.create_task(asyncio.to_thread(publish, path))
    await asyncio.to_thread(kill_mid_publish)
    done = await task
    if outage_s > deadline_s * 3:  # the deadline passed while the broker was down
        assert done.returncode == EXIT_BROKER, done.stderr[-2_000:]

    failed = sorted(
        int(n) for n in re.findall(r"^\S+:(\d+): not acknowledged: ", done.stderr, re.MULTILINE)
    )
    assert done.returncode == (EXIT_BROKER if failed else 0), done.stderr[-2_000:]
    on_topic = collections.Counter(
        r.event.event_id for r in await read_all(settings, AccountDisrupted)
    )
    acked = [e.event_id for n, e in enumerate(events, 1) if n not in set(failed)]
    assert [i for i in acked if on_topic[i] != 1] == []  # every acknowledged one exactly once

    if failed:  # publishing the unacknowledged lines again is safe: each ends up there
        retry = tmp_path / "retry.jsonl"
        lines = path.read_bytes().splitlines(keepends=True)
        retry.write_bytes(b"".join(lines[n - 1] for n in failed))
        again = await asyncio.to_thread(publish, retry)
        assert again.returncode == 0, again.stderr[-2_000:]
        on_topic = collections.Counter(
            r.event.event_id for r in await read_all(settings, AccountDisrupted)
        )
    assert {e.event_id for e in events} <= set(on_topic)
    print(f"unacknowledged: {len(failed)}; on topic: {sum(on_topic.values())}")
