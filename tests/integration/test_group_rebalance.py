"""Typed subscribers in one group survive members joining and leaving mid-stream."""

from __future__ import annotations

import asyncio
from uuid import UUID

import pytest

from consumers import Subscription
from producers import FeedProducer
from schemas import AccountDisrupted
from tests.conftest import SettingsFactory
from tests.factories import account
from tests.integration.worker import POLL_SECONDS

pytestmark = pytest.mark.integration

REGIONS = ("RU", "CN", "IR", "KP", "KH", "US", "NG", "BR", "IN")


async def test_members_join_and_leave_mid_stream_and_the_group_misses_nothing(
    make_settings: SettingsFactory, group_id: str
) -> None:
    settings = await make_settings()
    got: dict[str, list[UUID]] = {"a": [], "b": [], "c": []}
    published: list[UUID] = []

    async def member(name: str) -> None:
        async with Subscription(
            [AccountDisrupted],
            settings=settings,
            group_id=group_id,
            start="earliest",
            commit_interval=0.05,  # commit often, so commits race the rebalances
        ) as sub:
            async for received in sub:
                got[name].append(received.event.event_id)
                await asyncio.sleep(0)  # a body that yields, as a real handler does

    stop = asyncio.Event()

    async def publish() -> None:
        """Rounds of 90 events over nine regions (all three partitions) until told to stop."""
        async with FeedProducer(settings) as producer:
            n = 0
            while not stop.is_set():
                events = [account(REGIONS[i % len(REGIONS)], minutes=n + i) for i in range(90)]
                assert all(o.ok for o in await producer.publish_many(events))
                published.extend(e.event_id for e in events)
                n += 90

    async def until(condition: object, what: str, timeout: float = 60) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition():  # type: ignore[operator]
            for task in members.values():
                if task.done():
                    task.result()  # a member that crashed fails the test with its error
            assert loop.time() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(POLL_SECONDS)

    def received() -> set[UUID]:
        return {i for ids in got.values() for i in ids}

    members = {name: asyncio.create_task(member(name)) for name in ("a", "b")}
    publisher = asyncio.create_task(publish())
    try:
        await until(lambda: got["a"] and got["b"], "both members to receive")
        members["c"] = asyncio.create_task(member("c"))  # a third joins mid-stream
        await until(lambda: got["c"], "the third member to receive")
        leaving = members.pop("b")
        leaving.cancel()  # one leaves mid-stream
        assert isinstance((await asyncio.gather(leaving, return_exceptions=True))[0],
                          asyncio.CancelledError)  # fmt: skip
        after = len(published)
        await until(lambda: len(published) > after + 900, "more events after the leave")
        stop.set()
        await publisher
        await until(lambda: received() >= set(published), "every event by the group")
    finally:
        stop.set()
        publisher.cancel()
        for task in members.values():
            task.cancel()
        results = await asyncio.gather(*members.values(), return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results), results
    assert len(published) > 1_800
    assert received() == set(published)
    assert got["c"]  # the member that joined took a share
