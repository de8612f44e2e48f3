"""The worker's fixes to Faust's consumer and producer (streams/_faust.py), held to their cases.

A commit never runs ahead of the table rows its batch wrote: Faust commits source offsets after
``producer.flush()``; its buffer's flush gave up after 0.1 s without a send and returned with rows
still queued, so a worker killed right after that commit lost rows whose records were never read
again. And records Faust dropped around a rebalance are read again even where the group never
committed (issue 13: the survivor's counts short after a takeover).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiokafka.consumer.fetcher import OffsetResetStrategy
from aiokafka.consumer.subscription_state import SubscriptionState
from faust.transport.producer import ProducerBuffer

from streams._faust import durable_flush

pytestmark = pytest.mark.unit


class _App:
    class conf:  # the shape Faust reads
        producer_threaded = False


async def _slow_buffer(delay: float, sent: list[int]) -> ProducerBuffer:
    buffer = ProducerBuffer()
    buffer.app = _App()  # type: ignore[assignment]

    async def send_pending(fut: Any) -> None:
        await asyncio.sleep(delay)  # a send stuck on metadata or a starved loop
        sent.append(fut)

    buffer._send_pending = send_pending  # type: ignore[method-assign]
    durable_flush(buffer)  # before start: the buffer's task binds its send when it starts
    await buffer.start()
    return buffer


async def test_flush_returns_only_when_every_queued_record_was_handed_to_the_client() -> None:
    sent: list[int] = []
    buffer = await _slow_buffer(0.25, sent)
    try:
        for n in range(3):
            buffer.put(n)  # type: ignore[arg-type]
        await buffer.flush()
        assert sent == [0, 1, 2]
        assert buffer.size == 0
    finally:
        await buffer.stop()


async def test_flush_waits_for_the_record_being_handed_over_when_the_queue_is_empty() -> None:
    sent: list[int] = []
    buffer = await _slow_buffer(0.25, sent)
    try:
        buffer.put(7)  # type: ignore[arg-type]
        for _ in range(100):  # until the buffer's task takes it: queue empty, send in flight
            if not buffer.size:
                break
            await asyncio.sleep(0)
        assert buffer.size == 0
        await buffer.flush()
        assert sent == [7]
    finally:
        await buffer.stop()


async def test_flush_of_a_stopped_buffer_with_records_left_raises() -> None:
    sent: list[int] = []
    buffer = await _slow_buffer(0.0, sent)
    await buffer.stop()
    buffer.put(1)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="1 record"):
        await buffer.flush()


async def _loop_turn() -> None:
    """One turn of the event loop: what the fake broker's answer takes."""
    loop = asyncio.get_running_loop()
    turned = loop.create_future()
    loop.call_soon(turned.set_result, None)
    await turned


class _Client:
    """The aiokafka consumer under Faust's, on aiokafka's own partition states.

    Seeks go through aiokafka's ``TopicPartitionState``: an explicit ``seek`` sets a position at
    once, while ``seek_to_beginning`` is a reset that leaves the partition without one until
    the broker's answer comes back (a loop turn here), as in aiokafka 0.14.
    """

    def __init__(self, committed: dict[Any, int | None], position: int) -> None:
        self.committed = committed
        self.subscription = SubscriptionState()
        self.subscription.assign_from_user(set(committed))
        for tp in committed:
            self.state(tp).seek(position)
            self.state(tp).highwater = position + 10

    def state(self, tp: Any) -> Any:
        return self.subscription.subscription.assignment.state_value(tp)

    def assignment(self) -> set[Any]:
        return set(self.subscription.assigned_partitions())

    async def seek_to_committed(self) -> dict[Any, int | None]:
        return dict(self.committed)

    async def beginning_offsets(self, tps: list[Any]) -> dict[Any, int]:
        await _loop_turn()  # the broker's answer
        return dict.fromkeys(tps, 3)

    def seek(self, tp: Any, offset: int) -> None:
        self.state(tp).seek(offset)

    async def seek_to_beginning(self, *tps: Any) -> None:
        for tp in tps:
            self.state(tp).await_reset(OffsetResetStrategy.EARLIEST)
        await _loop_turn()  # the broker's answer
        for tp in tps:
            self.state(tp).reset_to(3)


class _FaustConsumer:
    def __init__(self, client: _Client) -> None:
        self.client = client

    def _ensure_consumer(self) -> _Client:
        return self.client

    async def call_thread(self, fn: Any, *args: Any) -> Any:
        return await fn(*args)

    async def seek_to_committed(self) -> Any:
        return await self.call_thread(self.client.seek_to_committed)


async def test_source_partitions_with_no_commit_are_sought_to_their_beginning() -> None:
    """aiokafka seeks only partitions with a committed offset above 0: a source partition the
    group never committed kept the position its dropped pre-seek fetch left (issue 13: the one
    record of a partition taken over from a killed worker was never counted).

    Every partition keeps a position throughout: Faust's livelock check reads each one's
    ``position`` while the seek runs, and aiokafka asserts when there is none, which crashed a
    worker right after a rebalance when the seek was a reset (``seek_to_beginning``).
    """
    from aiokafka import TopicPartition as TP

    from streams._faust import seek_uncommitted_to_beginning

    committed = {
        TP("t.account-disrupted", 0): 12,
        TP("t.report-released", 2): None,
        TP("t.network-identified", 1): 0,
        TP("t-worker-events-changelog", 2): None,  # tables' partitions: Faust seeks those
    }
    client = _Client(committed, position=7)
    consumer = _FaustConsumer(client)
    starts: dict[str, int] = {}
    seek_uncommitted_to_beginning(
        consumer, {"t.account-disrupted", "t.report-released", "t.network-identified"}, starts
    )
    seeking = asyncio.ensure_future(consumer.seek_to_committed())
    while not seeking.done():  # what Faust's livelock check reads, on every loop turn
        assert all(client.state(tp).has_valid_position for tp in committed)
        await _loop_turn()
    assert seeking.result() == committed
    positions = {tp: client.state(tp).position for tp in committed}
    fresh = {TP("t.network-identified", 1), TP("t.report-released", 2)}
    assert positions == {tp: 3 if tp in fresh else 7 for tp in committed}
    # Where each source's reading starts: what a hole is measured from before anything counts.
    assert starts == {
        "t.account-disrupted:0": 12,
        "t.report-released:2": 3,
        "t.network-identified:1": 3,
    }


def test_the_worker_app_carries_both_fixes(tmp_path: Path) -> None:
    from disruptfeed.settings import Settings
    from streams.app import create_app

    settings = Settings(
        topic_prefix="t-fixes",
        data_dir=tmp_path,
        worker_store="memory://",
        bootstrap_servers="127.0.0.1:9",  # never contacted: the app is built, not started
    )
    app = create_app(settings)
    assert app.producer.buffer.flush.__qualname__.startswith("durable_flush.")
    thread = app.consumer._thread  # type: ignore[attr-defined]
    assert thread.seek_to_committed.__qualname__.startswith("seek_uncommitted_to_beginning.")
    assert callable(thread._ensure_consumer)
    assert callable(thread.call_thread)
    from streams._worker_state import worker_state

    assert worker_state(app).fill is not None  # holes in what Faust delivers are filled


def test_a_memory_store_shared_between_workers_is_warned_about() -> None:
    from streams.app import shared_memory_store_warning

    assert shared_memory_store_warning("rocksdb://", 3, 9) is None
    assert shared_memory_store_warning("memory://", 9, 9) is None  # one worker holds them all
    warning = shared_memory_store_warning("memory://", 3, 9)
    assert warning is not None
    assert "3 of the feed's 9" in warning
    assert "DISRUPTFEED_WORKER_STORE=rocksdb://" in warning
