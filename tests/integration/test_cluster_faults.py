"""A three-node cluster loses a partition leader mid-stream: nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
import collections
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from disruptfeed._cluster import LocalCluster
from disruptfeed.sample import build_sample
from disruptfeed.settings import Settings
from disruptfeed.topics import _admin, create_topics, topic_for
from producers import FeedProducer
from schemas import AccountDisrupted
from streams._recount import recount
from tests.integration.helpers import read_all
from tests.integration.worker import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    nodes = LocalCluster(Settings(data_dir=tmp_path), 3, data_dir=tmp_path / "cluster")
    nodes.start()
    try:
        yield nodes
    finally:
        nodes.stop()


async def _leader(settings: Settings, topic: str, partition: int) -> int:
    admin = await _admin(settings)
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    [row] = [p for p in described["partitions"] if p["partition"] == partition]
    return int(row["leader"])


async def test_a_partition_leader_killed_mid_stream_loses_nothing_acknowledged(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    settings = Settings(
        bootstrap_servers=cluster.bootstrap_servers,
        topic_prefix=f"t-{uuid.uuid4().hex[:12]}",
        partitions=3,
        replication_factor=3,
        data_dir=tmp_path / "data",
        linger_ms=5,
    )
    await create_topics(settings)
    topic = topic_for(settings, AccountDisrupted)
    worker = WorkerProcess(settings, tmp_path / "worker")
    events = build_sample()
    chunks = [events[i : i + 120] for i in range(0, len(events), 120)]
    acked: list[uuid.UUID] = []
    refused = 0
    killed = 0
    await asyncio.to_thread(worker.start)
    try:
        await asyncio.to_thread(worker.wait_healthy)
        async with FeedProducer(settings) as producer:
            for i, chunk in enumerate(chunks):
                if i == 3:
                    killed = await _leader(settings, topic, 0)
                    await asyncio.to_thread(cluster.kill, killed)
                if i == 7:
                    await asyncio.to_thread(cluster.start_node, killed)
                for outcome, event in zip(await producer.publish_many(chunk), chunk, strict=True):
                    if outcome.ok:
                        acked.append(event.event_id)
                    else:
                        refused += 1
        assert killed in (1, 2, 3)
        assert await _leader(settings, topic, 0) != -1

        # Every acknowledged event is on its topic exactly once.
        stored = collections.Counter(
            r.event.event_id for r in await read_all(settings, *{type(e) for e in events})
        )
        assert refused == 0 or len(acked) + refused == len(events)
        missing = [i for i in acked if stored[i] == 0]
        twice = [i for i, n in stored.items() if n > 1]
        assert (missing, twice) == ([], [])
        expected = (await recount(settings)).processor.store.snapshot()
        assert sum(t["total"] for r in expected.values() for t in r.values()) == len(stored)
        await asyncio.to_thread(
            worker.wait_for, lambda: worker.get("/counts") == expected, "exact counts", 180
        )
        print(f"killed node {killed}; acknowledged {len(acked)}, refused {refused}")
    finally:
        await asyncio.to_thread(worker.stop)
