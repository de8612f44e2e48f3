"""Events published with the typed producer come back complete, in order, typed."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from consumers import InvalidRecord, Subscription, subscribe
from disruptfeed.sample import SampleSpec, build_sample
from producers import FeedProducer
from schemas import AccountDisrupted, codec
from tests.conftest import SettingsFactory
from tests.factories import account, network
from tests.integration.helpers import read_all

pytestmark = pytest.mark.integration


async def test_sample_round_trip_is_complete_and_ordered_per_region(
    make_settings: SettingsFactory,
) -> None:
    settings = await make_settings()
    events = build_sample(SampleSpec(accounts_per_network=10))
    async with FeedProducer(settings) as producer:
        outcomes = await producer.publish_many(events)
    assert all(o.ok and not o.duplicate for o in outcomes)

    received = await read_all(settings)
    assert sorted(str(r.event.event_id) for r in received) == sorted(
        str(e.event_id) for e in events
    )
    assert {r.event.event_id: r.event for r in received} == {e.event_id: e for e in events}

    # Kafka orders by key within a topic: each region's events on a topic arrive as published.
    def per_region(seq: list[tuple[str, str, str]]) -> dict[tuple[str, str], list[str]]:
        groups: dict[tuple[str, str], list[str]] = collections.defaultdict(list)
        for topic, region, event_id in seq:
            groups[(topic, region)].append(event_id)
        return groups

    sent = per_region(
        [(o.topic, e.region, str(e.event_id)) for o, e in zip(outcomes, events, strict=True)]
    )
    got = per_region([(r.topic, r.event.region, str(r.event.event_id)) for r in received])
    assert got == sent


async def test_cli_publishes_exactly_the_good_lines(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = await make_settings()
    good = [account("RU"), network("CN"), account("IR")]
    duplicate = good[0]
    lines = [
        codec.encode(good[0]),
        b'{"type": "account.disrupted", "event_id": "7',  # truncated
        codec.encode(good[1]),
        codec.dumps({**codec.to_dict(account()), "accounts": "many"}),  # wrong type
        codec.encode(duplicate),  # same id again: published once
        codec.dumps(
            {**codec.to_dict(account()), "actor": {"region": "XX", "attribution": "unknown"}}
        ),
        codec.encode(good[2]),
        # A publisher whose clock is a day ahead: it would freeze the partition's stream time.
        codec.encode(account("RU", occurred_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=1))),
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    env = {
        **os.environ,
        "DISRUPTFEED_BOOTSTRAP_SERVERS": settings.bootstrap,
        "DISRUPTFEED_TOPIC_PREFIX": settings.topic_prefix,
    }
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "disruptfeed", "publish", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert f"{path}:2: Invalid JSON: EOF while parsing" in done.stderr
    assert f"{path}:4: accounts: Input should be a valid integer" in done.stderr
    assert (
        f"{path}:6: actor.region: Value error, 'XX' is not an ISO 3166-1 alpha-2 code"
        in done.stderr
    )
    assert f"{path}:8: occurred_at: 86," in done.stderr  # 86,399 or 86,400 s by now
    assert "s ahead of its publish time; the limit is 300 s" in done.stderr
    assert "published 3, rejected 4, skipped 1 duplicate event ids" in done.stderr

    received = await read_all(settings)
    assert sorted(str(r.event.event_id) for r in received) == sorted(str(e.event_id) for e in good)


async def test_consumer_group_commits_at_least_once(
    make_settings: SettingsFactory, group_id: str
) -> None:
    settings = await make_settings()
    events = [account("RU", minutes=i) for i in range(20)]  # one region: one partition, in order
    async with FeedProducer(settings) as producer:
        await producer.publish_many(events)
    ids = [str(e.event_id) for e in events]

    async def read(count: int, *, commit: bool) -> list[str]:
        got: list[str] = []
        async with Subscription(
            [AccountDisrupted], settings=settings, group_id=group_id, start="earliest"
        ) as sub:
            async for received in sub:
                got.append(str(received.event.event_id))
                if len(got) == count:
                    if commit:
                        await sub.commit()
                    break
        return got

    # Leaving the loop without commit(): the event in hand was not confirmed, so it comes again.
    assert await read(5, commit=False) == ids[:5]
    assert await read(5, commit=True) == ids[4:9]
    # The rest, for a new member of the same group: nothing lost, nothing repeated.
    assert await read(11, commit=True) == ids[9:]


async def test_subscribe_from_a_time_and_skip_duplicates(make_settings: SettingsFactory) -> None:
    settings = await make_settings()
    old = [account() for _ in range(5)]
    async with FeedProducer(settings) as producer:
        await producer.publish_many(old)
        # Record timestamps are the producer's clock at send time, in milliseconds: wait (at most
        # a millisecond) until the clock has moved past the last old record, so "new" is exact.
        last_old = max(r.timestamp_ms for r in await read_all(settings))
        while time.time_ns() // 1_000_000 <= last_old:
            pass
        boundary = dt.datetime.fromtimestamp((last_old + 1) / 1000, dt.UTC)
        new = [account() for _ in range(4)]
        await producer.publish_many(new)
        await producer.publish(new[0])  # a second copy of an id: delivered once

    stream = subscribe(AccountDisrupted, settings=settings, start=boundary, stop_at_end=True)
    got = [e async for e in stream]
    assert sorted(str(e.event_id) for e in got) == sorted(str(e.event_id) for e in new)


async def test_invalid_records_are_skipped_not_fatal(make_settings: SettingsFactory) -> None:
    from aiokafka import AIOKafkaProducer

    settings = await make_settings()
    good_before, good_after = account(), account()
    raw = AIOKafkaProducer(bootstrap_servers=settings.bootstrap)
    await raw.start()
    try:
        topic = settings.topic("account-disrupted")
        await raw.send_and_wait(topic, codec.encode(good_before), key=b"RU")
        await raw.send_and_wait(topic, b"\x00garbage", key=b"RU")
        await raw.send_and_wait(topic, codec.encode(good_after), key=b"RU")
    finally:
        await raw.stop()
    invalid: list[InvalidRecord] = []
    async with Subscription(
        [AccountDisrupted],
        settings=settings,
        start="earliest",
        stop_at_end=True,
        on_invalid=invalid.append,
    ) as sub:
        got = [r.event for r in [x async for x in sub]]
    assert got == [good_before, good_after]
    assert len(invalid) == 1
    assert invalid[0].offset == 1
    assert "Invalid JSON" in str(invalid[0].error)


async def test_cli_tail_prints_what_was_published(make_settings: SettingsFactory) -> None:
    settings = await make_settings()
    events = [account("RU", minutes=i) for i in range(5)] + [network("CN")]
    async with FeedProducer(settings) as producer:
        await producer.publish_many(events)
    env = {
        **os.environ,
        "DISRUPTFEED_BOOTSTRAP_SERVERS": settings.bootstrap,
        "DISRUPTFEED_TOPIC_PREFIX": settings.topic_prefix,
    }

    def tail(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "disruptfeed",
                "tail",
                "--from",
                "earliest",
                "--until-end",
                *args,
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )

    as_json = await asyncio.to_thread(tail, "--format", "jsonl")
    assert as_json.returncode == 0, as_json.stderr
    got = sorted(codec.decode(line).event_id.hex for line in as_json.stdout.splitlines())
    assert got == sorted(e.event_id.hex for e in events)
    assert "6 events" in as_json.stderr
    readable = await asyncio.to_thread(tail, "account-disrupted")
    lines = readable.stdout.splitlines()
    assert len(lines) == 5
    assert all("RU" in line and "account.disrupted" in line for line in lines)
