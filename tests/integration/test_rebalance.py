"""Two live workers share the partitions: each rebuilds what it is assigned, drops the rest."""

from __future__ import annotations

import asyncio
import urllib.error
from pathlib import Path
from typing import Any

import pytest

from consumers import read_alerts
from disruptfeed.sample import build_sample
from producers import FeedProducer
from streams._recount import recount
from tests.conftest import SettingsFactory
from tests.integration.helpers import dead_letters, takeover_dump
from tests.integration.worker import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _regions(worker: WorkerProcess) -> set[str]:
    return set(worker.get("/counts"))


async def test_a_second_worker_takes_partitions_and_gives_them_back(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = await make_settings()
    events = build_sample()
    half = len(events) // 2
    first = WorkerProcess(settings, tmp_path / "first")
    second = WorkerProcess(settings, tmp_path / "second")
    second.token = first.token  # one feed, one token: workers ask each other with the caller's

    async def publish(chunk: list[Any]) -> None:
        async with FeedProducer(settings) as producer:
            assert all(o.ok for o in await producer.publish_many(chunk))

    try:
        await asyncio.to_thread(first.start)
        await asyncio.to_thread(first.wait_healthy)
        await publish(events[:half])
        early = (await recount(settings)).processor.store.snapshot()
        await asyncio.to_thread(first.wait_for, lambda: first.get("/counts") == early, "counts")

        # A second worker joins: the partitions split, and each worker holds exactly the
        # regions of its own partitions, with the counts the history gives them.
        await asyncio.to_thread(second.start)

        def split() -> bool:
            mine = first.get("/counts?scope=local")
            theirs = second.get("/counts?scope=local")
            return (
                bool(mine)
                and bool(theirs)
                and not set(mine) & set(theirs)
                and {**mine, **theirs} == early
            )

        try:
            await asyncio.to_thread(first.wait_for, split, "partitions split between two workers")
        except AssertionError:
            mine, theirs = first.get("/counts"), second.get("/counts")
            print("first", {r: mine[r] for r in mine}, "\nsecond", theirs, "\nearly", early)
            print(second.tail(80))
            raise
        assert first.get("/health")["status"] == second.get("/health")["status"] == "ok"
        # Either worker answers for every region, saying which workers the parts came from.
        for asked, other in ((first, second), (second, first)):
            assert asked.get("/counts") == early
            workers = asked.header("/counts", "X-Disruptfeed-Workers").split(", ")
            assert workers == [f"http://127.0.0.1:{asked.port}", f"http://127.0.0.1:{other.port}"]
        assert first.get("/alerts")["alerts"] == second.get("/alerts")["alerts"]

        # Both count the rest of the stream, each on its own partitions.
        await publish(events[half:])
        history = await recount(settings)
        expected = history.processor.store.snapshot()

        def shared() -> bool:
            return bool(first.get("/counts") == second.get("/counts") == expected)

        await asyncio.to_thread(first.wait_for, shared, "exact counts on two workers")

        # The second leaves; the first takes its partitions back, state and all.
        await asyncio.to_thread(second.stop)
        await asyncio.to_thread(
            first.wait_for, lambda: first.get("/counts") == expected, "counts on one worker"
        )
    finally:
        await asyncio.to_thread(second.stop)
        await asyncio.to_thread(first.stop)

    published = [a async for a in read_alerts(settings, start="earliest", until_end=True)]
    got = {a.alert_id for a in published}
    derived = {a.alert_id for a in history.alerts}
    assert len(derived) > 40
    assert (derived - got, got - derived) == (set(), set())


async def test_a_worker_killed_mid_stream_is_taken_over_and_counts_stay_exact(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = await make_settings()
    events = build_sample()
    half = len(events) // 2
    env = {"DISRUPTFEED_SESSION_TIMEOUT": "6"}  # the group notices a dead member sooner
    first = WorkerProcess(settings, tmp_path / "first", env=env)
    second = WorkerProcess(settings, tmp_path / "second", env=env)
    second.token = first.token

    async def publish(chunk: list[Any]) -> None:
        async with FeedProducer(settings) as producer:
            assert all(o.ok for o in await producer.publish_many(chunk))

    try:
        for worker in (first, second):
            await asyncio.to_thread(worker.start)
        for worker in (first, second):
            await asyncio.to_thread(worker.wait_healthy)
        await publish(events[:half])
        early = (await recount(settings)).processor.store.snapshot()

        def both_count() -> bool:
            local = first.get("/counts?scope=local"), second.get("/counts?scope=local")
            return all(local) and first.get("/counts") == early

        await asyncio.to_thread(first.wait_for, both_count, "two workers sharing the counts")
        publishing = asyncio.create_task(publish(events[half:]))
        await asyncio.to_thread(second.kill)  # mid-stream
        await publishing
        history = await recount(settings)
        expected = history.processor.store.snapshot()

        def taken_over() -> bool:
            try:
                return bool(first.get("/counts") == expected)
            except urllib.error.HTTPError as exc:
                # Until the group drops the dead member, the answer names it, never a part.
                if exc.code != 503:
                    raise
                return False

        try:
            await asyncio.to_thread(first.wait_for, taken_over, "the survivor's exact counts")
        except AssertionError:
            got_now = first.get("/counts?scope=local")
            diff = {r: (got_now.get(r), expected.get(r)) for r in {*got_now, *expected}
                    if got_now.get(r) != expected.get(r)}  # fmt: skip
            raise AssertionError(
                f"survivor's counts differ (got, expected): {diff}\n{first.tail(150)}\n"
                f"{await takeover_dump(settings)}"
            ) from None
        assert first.header("/counts", "X-Disruptfeed-Workers") == f"http://127.0.0.1:{first.port}"
    finally:
        await asyncio.to_thread(first.stop)
        if second.proc is not None:
            await asyncio.to_thread(second.kill)

    published = [a async for a in read_alerts(settings, start="earliest", until_end=True)]
    got = {a.alert_id for a in published}
    derived = {a.alert_id for a in history.alerts}
    assert (derived - got, got - derived) == (set(), set())
    # Records read twice around a rebalance are skipped, never dead-lettered as too old.
    letters = await dead_letters(settings)
    refused = {(h["dlq_topic"], h["dlq_partition"], h["dlq_offset"]) for h in letters}
    assert len(refused) == history.processor.stats.dead_lettered, letters
