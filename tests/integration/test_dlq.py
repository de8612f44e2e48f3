"""``disruptfeed dlq tail`` and ``dlq redrive`` against a real broker and a real worker."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from click.testing import CliRunner, Result

from consumers._kafka import start_consumer
from disruptfeed.broker import free_port
from disruptfeed.cli import main
from disruptfeed.settings import Settings
from disruptfeed.topics import DEAD_LETTER, EVENT_TOPICS
from producers import FeedProducer
from schemas import AccountDisrupted, codec
from tests.conftest import SettingsFactory
from tests.factories import account
from tests.integration.helpers import read_all
from tests.integration.worker import POLL_SECONDS, WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOUR_MS = 3_600_000


def _dlq(settings: Settings, *args: str) -> Result:
    return CliRunner().invoke(main, ["dlq", *args], obj=settings, catch_exceptions=False)


async def dlq(settings: Settings, *args: str) -> Result:
    """The command in a thread: it runs its own event loop."""
    return await asyncio.to_thread(_dlq, settings, *args)


async def end_offsets(settings: Settings) -> dict[str, int]:
    """Per topic (events and dead letters), the sum of its partitions' end offsets."""
    consumer = await start_consumer(settings)
    try:
        names = [settings.topic(t) for t in (*EVENT_TOPICS, DEAD_LETTER)]
        parts = [TopicPartition(n, p) for n in names for p in range(settings.partitions)]
        ends = await consumer.end_offsets(parts)
        return {n: sum(o for tp, o in ends.items() if tp.topic == n) for n in names}
    finally:
        await consumer.stop()


async def wait_for(check: Callable[[], Any], what: str, timeout: float = 90) -> Any:
    """Poll an async check until it returns something truthy; fail after the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(POLL_SECONDS)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def at(meta: Any) -> str:
    return f"{meta.topic}[{meta.partition}]@{meta.offset}"


def ng(minutes_ago: float) -> AccountDisrupted:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    return account("NG", occurred_at=now - dt.timedelta(minutes=minutes_ago))


async def test_tail_and_redrive_with_a_real_worker(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = await make_settings()
    topic = settings.topic("account-disrupted")
    async with FeedProducer(settings) as producer:
        for event in (ng(120), ng(110)):
            await producer.publish(event)

    now_ms = time.time_ns() // 1_000_000
    late = ng(60)  # valid, but sent by a publisher whose clock was three hours behind
    year_9999 = account("RU", occurred_at=dt.datetime(9999, 1, 1, tzinfo=dt.UTC))
    fixed = account("KP", occurred_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30))
    raw = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, max_request_size=2 * 1024 * 1024)
    await raw.start()
    try:
        send = raw.send_and_wait
        sent = {
            "late": await send(
                topic,
                codec.encode(late),
                key=b"NG",
                headers=codec.headers(late),
                timestamp_ms=now_ms - 3 * HOUR_MS,
            ),
            "ahead": await send(
                topic, codec.encode(year_9999), key=b"RU", headers=codec.headers(year_9999)
            ),
            "garbage": await send(topic, b"\xff\xfe not json", key=b"RU"),
            "huge": await send(topic, b"x" * 1_000_000, key=b"RU"),
        }
    finally:
        await raw.stop()

    worker = WorkerProcess(settings, tmp_path / "worker")
    await asyncio.to_thread(worker.start)
    try:
        await asyncio.to_thread(worker.wait_healthy)

        async def dead_letters() -> list[dict[str, Any]] | None:
            result = await dlq(settings, "tail", "--from", "earliest", "--output", "json")
            assert result.exit_code == 0, result.output
            rows: list[dict[str, Any]] = json.loads(result.output)
            return rows if len(rows) >= 4 else None

        rows = await wait_for(dead_letters, "four dead letters")
        by_source = {row["source"]: row for row in rows}
        assert set(by_source) == {at(meta) for meta in sent.values()}

        # Each shows its reason, error type, field and a readable value.
        row = by_source[at(sent["late"])]
        assert row["error_type"] == "FutureEventTimeError"
        assert row["field"] == "occurred_at"
        assert row["reason"].startswith("future-event-time: occurred_at: 7,")  # 2 h ahead
        assert "s ahead of its publish time" in row["reason"]
        assert row["value"].startswith('{"event_id":"')
        assert row["copied"] is True
        assert by_source[at(sent["ahead"])]["error_type"] == "FutureEventTimeError"
        row = by_source[at(sent["garbage"])]
        assert (row["error_type"], row["value"]) == ("DecodeError", "\\xff\\xfe not json")
        assert row["reason"] == "not valid UTF-8: byte 0 is 0xff"
        row = by_source[at(sent["huge"])]
        assert row["copied"] is False
        assert row["value"] == f"not copied: 1,000,000 bytes, see {at(sent['huge'])}"
        assert all(r["position"].startswith(f"{settings.topic(DEAD_LETTER)}[") for r in rows)

        # The table, for people; filters; the last N.
        result = await dlq(settings, "tail")
        assert result.exit_code == 0
        lines = result.output.splitlines()
        assert lines[0].split() == ["DEAD-LETTERED", "SOURCE", "ERROR", "FIELD", "REASON"]
        for name in ("late", "garbage", "huge"):
            assert any(at(sent[name]) in line for line in lines), name
        assert "    value: \\xff\\xfe not json" in lines
        future = await dlq(settings, "tail", "--reason", "future-event-time", "--output", "jsonl")
        got = [json.loads(line)["source"] for line in future.output.splitlines()]
        assert sorted(got) == sorted([at(sent["late"]), at(sent["ahead"])])
        last = await dlq(settings, "tail", "-n", "1", "--output", "json")
        assert json.loads(last.output) == [rows[-1]]
        assert (await dlq(settings, "tail", "--since", "1h", "--output", "json")).exit_code == 0

        # A fixed copy put on the dead-letter topic by hand, as its original's dead letter.
        raw = AIOKafkaProducer(bootstrap_servers=settings.bootstrap)
        await raw.start()
        try:
            headers = [
                *codec.headers(fixed),
                ("dlq_reason", b"region: fixed by hand"),
                ("dlq_topic", topic.encode()),
                ("dlq_partition", b"0"),
                ("dlq_offset", b"999"),
                ("dlq_field", b"actor.region"),
                ("dlq_error_type", b"SchemaValidationError"),
            ]
            copy = await raw.send_and_wait(
                settings.topic(DEAD_LETTER), codec.encode(fixed), key=b"KP", headers=headers
            )
        finally:
            await raw.stop()

        # A dry run says what would happen, and publishes nothing.
        before = await end_offsets(settings)
        dry = await dlq(settings, "redrive", "--dry-run", "--output", "json")
        assert dry.exit_code == 1, dry.output  # some would fail again
        plan = json.loads(dry.output)
        assert plan["dry_run"] is True
        assert plan["counts"] == {
            "redriven": 2,
            "failed_again": 3,
            "skipped": 0,
            "already_redriven": 0,
            "not_acknowledged": 0,
        }
        actions = {item["source"]: item["action"] for item in plan["items"]}
        assert actions == {
            at(sent["late"]): "redriven",
            f"{topic}[0]@999": "redriven",
            at(sent["ahead"]): "failed-again",
            at(sent["garbage"]): "failed-again",
            at(sent["huge"]): "failed-again",  # judged on the original, read from its topic
        }
        table = await dlq(settings, "redrive", "--dry-run")
        assert "would redrive 2, would fail again 3" in table.output
        assert f"{at(sent['huge'])}  would fail again: event is 1000000 bytes" in table.output
        assert await end_offsets(settings) == before

        # The real run: the valid ones published and counted, the others dead-lettered again.
        done = await dlq(settings, "redrive", "--output", "json")
        assert done.exit_code == 1, done.output
        report = json.loads(done.output)
        assert report["counts"] == {**plan["counts"]}
        after = await end_offsets(settings)
        assert after[topic] == before[topic] + 2
        # Two markers and three dead letters written again.
        assert after[settings.topic(DEAD_LETTER)] == before[settings.topic(DEAD_LETTER)] + 5

        def counted() -> bool:
            totals = worker.get("/counts")
            return bool(
                totals.get("NG", {}).get("account.disrupted", {}).get("total") == 3
                and totals.get("KP", {}).get("account.disrupted", {}).get("total") == 1
            )

        await asyncio.to_thread(worker.wait_for, counted, "the redriven events counted")

        again = await dlq(settings, "tail", "--from", "earliest", "--output", "json")
        rows = json.loads(again.output)
        assert len(rows) == 8  # 5 dead letters (markers are not shown) and 3 written again
        by_position = {row["position"]: row for row in rows}
        items = {item["source"]: item for item in report["items"]}
        for name in ("ahead", "garbage", "huge"):
            item = items[at(sent[name])]
            new = by_position[item["result"]]
            assert new["redrive_of"] == item["position"]
            assert new["source"] == at(sent[name])  # still names the original record
            assert by_position[item["position"]]["redriven"] == item["result"]
        huge = by_position[items[at(sent["huge"])]["result"]]
        assert (huge["copied"], huge["value_bytes"]) == (False, 1_000_000)  # named, not copied
        new = by_position[items[at(sent["ahead"])]["result"]]
        assert new["error_type"] == "FutureEventTimeError"
        assert new["reason"].startswith("future-event-time: occurred_at: ")
        assert new["reason"] != by_source[at(sent["ahead"])]["reason"]  # measured from now
        for source in (at(sent["late"]), f"{topic}[0]@999"):
            published = items[source]["result"]
            assert published.startswith(f"{topic}[")
            assert by_position[items[source]["position"]]["redriven"] == published
        assert by_position[f"{settings.topic(DEAD_LETTER)}[{copy.partition}]@{copy.offset}"]

        # Again over the same range: nothing is published twice; the new dead letters are
        # tried (and fail) again.
        second = await dlq(settings, "redrive", "--output", "json")
        assert second.exit_code == 1
        assert json.loads(second.output)["counts"] == {
            "redriven": 0,
            "failed_again": 3,
            "skipped": 0,
            "already_redriven": 5,
            "not_acknowledged": 0,
        }
        assert (await end_offsets(settings))[topic] == after[topic]
        assert worker.get("/counts/NG")["NG"]["account.disrupted"]["total"] == 3
    finally:
        await asyncio.to_thread(worker.stop)


async def _dead(settings: Settings, n: int) -> Any:
    """A dead letter written to the topic directly, numbered ``n``."""
    raw = AIOKafkaProducer(bootstrap_servers=settings.bootstrap)
    await raw.start()
    try:
        headers = [
            ("dlq_reason", f"test dead letter {n}".encode()),
            ("dlq_topic", settings.topic("account-disrupted").encode()),
            ("dlq_partition", b"1"),
            ("dlq_offset", str(n).encode()),
            ("dlq_error_type", b"DecodeError"),
        ]
        return await raw.send_and_wait(settings.topic(DEAD_LETTER), b"\x00" * 3, headers=headers)
    finally:
        await raw.stop()


def test_tail_follows_new_dead_letters(make_settings: SettingsFactory) -> None:
    async def make() -> Settings:
        return await make_settings()

    settings = asyncio.run(make())
    for n in range(3):
        asyncio.run(_dead(settings, n))
    env = {
        **os.environ,
        "DISRUPTFEED_BOOTSTRAP_SERVERS": settings.bootstrap,
        "DISRUPTFEED_TOPIC_PREFIX": settings.topic_prefix,
        "DISRUPTFEED_PARTITIONS": str(settings.partitions),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "disruptfeed", "dlq", "tail", "-n", "2", "--follow"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in proc.stdout or ():
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    seen: list[str] = []

    def until(text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in seen):
            left = deadline - time.monotonic()
            assert left > 0, f"no {text!r} in:\n" + "".join(seen)
            try:
                seen.append(lines.get(timeout=left))
            except queue.Empty:
                continue

    try:
        until("test dead letter 2")  # the backlog: the last two
        assert not any("test dead letter 0" in line for line in seen)
        asyncio.run(_dead(settings, 3))  # arrives while it follows
        until("test dead letter 3")
        assert any("account-disrupted[1]@3" in line for line in seen)
        assert any("value: \\x00\\x00\\x00" in line for line in seen)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()


async def test_redrive_exits_3_when_the_broker_is_unreachable(tmp_path: Path) -> None:
    settings = Settings(
        bootstrap_servers=f"127.0.0.1:{free_port()}", data_dir=tmp_path, topic_prefix="nowhere"
    )
    result = await dlq(settings, "redrive")
    assert result.exit_code == 3
    assert "no broker answers at" in result.output


async def test_redrive_fetches_an_original_the_dead_letter_only_names(
    make_settings: SettingsFactory,
) -> None:
    # A dead letter of the worker's own failure (handling-failed) or of an original too big to
    # copy holds no value, only where the original is. Redrive reads it from there: publishes
    # it when it is valid, writes a new dead letter (naming it again, not a copy) when it is
    # not, and says so when retention has deleted it.
    from streams._processor import dead_letter_headers

    settings = await make_settings(partitions=1)
    topic = settings.topic("account-disrupted")
    uncounted = account("RU", minutes=-30)
    raw = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, max_request_size=2 * 1024 * 1024)
    await raw.start()
    try:
        send = raw.send_and_wait
        good = await send(
            topic, codec.encode(uncounted), key=b"RU", headers=codec.headers(uncounted)
        )
        huge = await send(topic, b"x" * 1_000_000, key=b"RU")
        for meta, size, error, code in (
            (good, len(codec.encode(uncounted)), RuntimeError("disk full"), "handling-failed"),
            (huge, 1_000_000, ValueError("event is 1000000 bytes"), "decode"),
        ):
            headers = dead_letter_headers(topic, meta.partition, meta.offset, error, code)
            headers.append(("dlq_value_bytes", str(size).encode()))
            await send(settings.topic(DEAD_LETTER), b"", key=b"RU", headers=headers)
        gone = dead_letter_headers(topic, 0, 10_000, RuntimeError("lost"), "handling-failed")
        gone.append(("dlq_value_bytes", b"100"))
        await send(settings.topic(DEAD_LETTER), b"", key=b"RU", headers=gone)
    finally:
        await raw.stop()

    dry = await dlq(settings, "redrive", "--dry-run", "--output", "json")
    assert dry.exit_code == 1, dry.output  # the huge one would fail again
    actions = {row["source"]: row["action"] for row in json.loads(dry.output)["items"]}
    assert actions == {
        f"{topic}[0]@{good.offset}": "redriven",
        f"{topic}[0]@{huge.offset}": "failed-again",
        f"{topic}[0]@10000": "skipped",
    }
    before = await end_offsets(settings)
    assert before[topic] == 2  # a dry run publishes nothing

    done = await dlq(settings, "redrive", "--output", "json")
    assert done.exit_code == 1, done.output
    items = {row["source"]: row for row in json.loads(done.output)["items"]}
    assert "no longer on" in items[f"{topic}[0]@10000"]["detail"]
    stored = [r.event.event_id for r in await read_all(settings, AccountDisrupted)]
    assert stored == [uncounted.event_id, uncounted.event_id]  # the original, and its redrive
    again = [
        row
        for row in json.loads((await dlq(settings, "tail", "--from", "earliest",
                                          "--output", "json")).output)
        if row["redrive_of"] is not None
    ]  # fmt: skip
    assert len(again) == 1
    assert again[0]["source"] == f"{topic}[0]@{huge.offset}"
    assert not again[0]["copied"]  # named again, not copied into the dead-letter topic
    assert again[0]["value_bytes"] == 1_000_000
    # Done once: a second redrive publishes nothing again (the replacement fails again).
    twice = await dlq(settings, "redrive", "--output", "json")
    assert twice.exit_code == 1, twice.output
    assert (await end_offsets(settings))[topic] == 3
    redriven = items[f"{topic}[0]@{good.offset}"]["position"]
    second = {row["position"]: row["action"] for row in json.loads(twice.output)["items"]}
    assert second[redriven] == "already-redriven"
