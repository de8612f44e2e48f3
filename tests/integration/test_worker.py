"""The stream worker against the real broker: exact counts, dead letters, alert lifecycle, crash."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import random
import subprocess
import sys
import urllib.parse
from collections import Counter
from pathlib import Path
from uuid import UUID

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from consumers import read_alerts
from disruptfeed._aiokafka import start_consumer_client
from disruptfeed.settings import Settings
from disruptfeed.topics import ALERTS, DEAD_LETTER
from producers import FeedProducer
from schemas import Alert, EventBase, codec, decode_alert
from tests.conftest import SettingsFactory
from tests.integration import stream_truth
from tests.integration.helpers import ng_burst_rules, read_raw
from tests.integration.worker import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RULES = ng_burst_rules()


async def _publish(settings: Settings, events: list[EventBase]) -> None:
    """Publish in order; a repeated event goes out as its own record, as a retry would."""
    seen: set[UUID] = set()
    batch: list[EventBase] = []
    async with FeedProducer(settings) as producer:

        async def flush() -> None:
            outcomes = await producer.publish_many(batch)
            assert all(o.ok and not o.duplicate for o in outcomes)
            batch.clear()

        for event in events:
            if event.event_id in seen:
                await flush()
                await producer.publish(event)  # publish_many would skip it within one batch
                continue
            seen.add(event.event_id)
            batch.append(event)
            if len(batch) >= 500:
                await flush()
        await flush()


async def _publish_bad(settings: Settings) -> int:
    """Records the worker must dead-letter, on each event topic. Returns how many."""
    raw = AIOKafkaProducer(bootstrap_servers=settings.bootstrap)
    await raw.start()
    rng = random.Random(3)
    good_report = stream_truth.report(stream_truth.T0, rng)
    bad = [
        ("account-disrupted", b"\xff\xfe not json"),
        ("account-disrupted", b'{"type": "account.disrupted", "event_id": "nope"}'),
        ("account-disrupted", codec.encode(good_report)),  # valid event, wrong topic
        ("network-identified", b"{truncated"),
        ("report-released", b"[]"),
        # A megabyte of non-JSON: too big to copy into a dead letter, which names it instead.
        ("account-disrupted", b"x" * 1_000_000),
        # Valid but dated year 9999: counted, it would freeze RU's partition at that time.
        (
            "account-disrupted",
            codec.encode(stream_truth.account("RU", dt.datetime(9999, 1, 1, tzinfo=dt.UTC), rng)),
        ),
    ]
    # Valid events in broken framing: content type, headers, key.
    framed = stream_truth.account("RU", stream_truth.T0, rng)
    value = codec.encode(framed)
    own: list[tuple[str, bytes | None]] = list(codec.headers(framed))
    xml = [(k, b"application/xml" if k == "content-type" else v) for k, v in own]
    odd: list[tuple[str, bytes, bytes, list[tuple[str, bytes | None]]]] = [
        ("account-disrupted", value, b"RU", xml),
        ("account-disrupted", value, b"RU", [*own, ("ce_id", b"\xff\xfe not utf-8")]),
        ("account-disrupted", value, b"RU", [*own, ("ce_type", None)]),
        ("account-disrupted", value, b"k" * 900_000, own),
    ]
    try:
        for name, value in bad:
            await raw.send_and_wait(settings.topic(name), value, key=b"RU")
        for name, value, key, headers in odd:
            await raw.send_and_wait(settings.topic(name), value, key=key, headers=headers)
    finally:
        await raw.stop()
    return len(bad) + len(odd)


def _check_worker(
    worker: WorkerProcess,
    settings: Settings,
    stream: stream_truth.GeneratedStream,
    expected: dict[str, dict[str, dict[str, int]]],
    bad: int,
) -> None:
    worker.start()
    try:
        worker.wait_healthy()
        worker.wait_for(lambda: worker.get("/counts") == expected, "counts to equal the truth")
        # The bad records follow the good ones on RU's partition: counts can be exact while the
        # last of them (a megabyte, fetched on its own) is still on its way to the dead letters.
        worker.wait_for(
            lambda: worker.get("/health")["dead_lettered"] >= bad, "every bad record dead-lettered"
        )
        assert worker.get("/counts/NG") == {"NG": expected["NG"]}
        # The query API answers nobody without the token; /health answers everyone.
        for path in ("/counts", "/counts/NG", "/stats", "/alerts"):
            assert worker.status(path, token=None) == 401, path
            assert worker.status(path, token="not-the-token") == 401, path
        assert worker.status("/health", token=None) == 200
        stats = worker.get("/stats")
        late = {
            (region, event_type): row["late"]
            for region, types in stats["counts"].items()
            for event_type, row in types.items()
            if row["late"]
        }
        assert late == stream.expected_late()
        assert stats["worker"]["dead_lettered"] == bad
        assert stats["worker"]["duplicates"] == stream.duplicates

        # The CLI prints the same object.
        env = {
            **os.environ,
            "DISRUPTFEED_WORKER_PORT": str(worker.port),
            "DISRUPTFEED_BOOTSTRAP_SERVERS": settings.bootstrap,
            "DISRUPTFEED_API_TOKEN": worker.token,
        }
        done = subprocess.run(
            [sys.executable, "-m", "disruptfeed", "counts", "--json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == expected
        _check_recount(worker, settings, {**env, "DISRUPTFEED_TOPIC_PREFIX": settings.topic_prefix})
    finally:
        worker.stop()


Done = subprocess.CompletedProcess[str]


def _check_recount(worker: WorkerProcess, settings: Settings, env: dict[str, str]) -> None:
    """``audit recount``: history alone gives the worker's counts, now and an hour back."""

    def recount(
        *args: str, grace: int = settings.grace_seconds
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "disruptfeed", "audit", "recount", *args],
            capture_output=True,
            text=True,
            env={**env, "DISRUPTFEED_GRACE_SECONDS": str(grace)},
            timeout=120,
            check=False,
        )

    done = recount()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no difference at" in done.stdout
    stream_time = dt.datetime.fromisoformat(worker.get("/stats")["stream_time"])
    earlier = (stream_time - dt.timedelta(hours=1)).isoformat()
    assert worker.get(f"/counts?at={urllib.parse.quote(earlier)}") != worker.get("/counts")
    done = recount("--at", earlier)
    assert done.returncode == 0, done.stdout + done.stderr
    # A recount with another grace classifies other events as late: the windows differ.
    done = recount(grace=0)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "DIFFERENT at" in done.stdout
    assert " history " in done.stderr
    assert " worker " in done.stderr
    done = recount("--at", "yesterday")
    assert done.returncode == 2
    assert "is not an ISO 8601 time" in done.stderr


async def test_counts_are_exact_and_alerts_fire_once(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = await make_settings(grace_seconds=3_600)
    stream = stream_truth.generate(steps=1_200, seed=7, burst=True)
    await _publish(settings, stream.events)
    bad = await _publish_bad(settings)
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    expected = stream.expected_counts()

    worker = WorkerProcess(settings, tmp_path / "worker", rules)
    await asyncio.to_thread(_check_worker, worker, settings, stream, expected, bad)

    dead = await read_raw(settings, settings.topic(DEAD_LETTER))
    assert len(dead) == bad
    for _, _, headers in dead:
        assert headers["dlq_reason"]
        assert headers["dlq_topic"].decode().startswith(settings.topic_prefix)
        assert int(headers["dlq_offset"]) >= 0
    reasons = Counter(h["dlq_error_type"].decode() for _, _, h in dead)
    assert reasons == {"DecodeError": 5, "SchemaValidationError": 5, "FutureEventTimeError": 1}
    fields = Counter(h["dlq_field"].decode() for _, _, h in dead)
    assert {f: fields[f] for f in ("content-type", "ce_id", "ce_type", "key")} == dict.fromkeys(
        ("content-type", "ce_id", "ce_type", "key"), 1
    )
    [huge_key] = [(k, h) for k, _, h in dead if h["dlq_field"] == b"key"]
    assert huge_key[0] is None  # not copied: the dead letter must fit the topic
    assert b"900000 bytes" in huge_key[1]["dlq_reason"]
    [poison] = [(v, h) for _, v, h in dead if "dlq_value_bytes" in h]
    assert poison[0] in (None, b"")
    assert poison[1]["dlq_value_bytes"] == b"1000000"
    assert sum(h["dlq_reason"].startswith(b"future-event-time: ") for _, _, h in dead) == 1

    # Through the ops alert stream, as an on-call tool reads it.
    alerts: list[Alert] = [a async for a in read_alerts(settings, start="earliest", until_end=True)]
    raw = await read_raw(settings, settings.topic(ALERTS))
    assert [decode_alert(v or b"") for _, v, _ in raw] == alerts
    assert all(
        key == alert.fingerprint.encode() for (key, _, _), alert in zip(raw, alerts, strict=True)
    )
    assert all(dict(h)["ce_type"].startswith(b"io.disruptfeed.alert.") for _, _, h in raw)
    assert [(a.rule, a.region, a.status) for a in alerts] == [
        ("ng-burst", "NG", "firing"),
        ("ng-burst", "NG", "resolved"),
    ]
    firing, resolved = alerts
    assert firing.fingerprint == resolved.fingerprint
    assert firing.value is not None
    assert firing.value >= 5
    assert firing.alert_id != resolved.alert_id
    assert set(firing.sample_event_ids) <= {e.event_id for e in stream.events}

    # 'audit alerts' re-derives the same two transitions from the history alone.
    env = {
        **os.environ,
        "DISRUPTFEED_BOOTSTRAP_SERVERS": settings.bootstrap,
        "DISRUPTFEED_TOPIC_PREFIX": settings.topic_prefix,
        "DISRUPTFEED_GRACE_SECONDS": str(settings.grace_seconds),
        "DISRUPTFEED_RULES_FILE": str(rules),
    }
    span = ("--since", "2000-01-01T00:00Z", "--until", "2100-01-01T00:00Z")
    done = await asyncio.to_thread(_audit, env, "alerts", *span)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no difference: 2 alerts re-derived and published alike" in done.stdout
    other_rules = tmp_path / "other.toml"
    other_rules.write_text(RULES.replace("ng-burst", "ng-burst-2"))
    done = await asyncio.to_thread(
        _audit, {**env, "DISRUPTFEED_RULES_FILE": str(other_rules)}, "alerts", *span
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "DIFFERENT: 4 alerts differ of 2 re-derived" in done.stdout
    assert done.stderr.count("missing: ") == done.stderr.count("unexpected: ") == 2


def _audit(env: dict[str, str], *args: str) -> Done:
    return subprocess.run(
        [sys.executable, "-m", "disruptfeed", "audit", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


async def test_worker_killed_mid_stream_ends_exact(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = await make_settings(grace_seconds=3_600)
    stream = stream_truth.generate(steps=4_000, seed=11)
    first, rest = stream.events[:2_700], stream.events[2_700:]
    await _publish(settings, first)
    expected = stream.expected_counts()

    # The first run commits no source offset before its kill (30 s between commits), so every
    # record it counted is read again: redelivery is certain, not a matter of timing.
    slow_commits = {"DISRUPTFEED_COMMIT_INTERVAL": "30"}
    worker = WorkerProcess(settings, tmp_path / "worker", env=slow_commits)

    def crash() -> None:
        worker.start()
        worker.wait_healthy()
        # Killed while working through the first part: nothing committed yet, all read again.
        worker.wait_for(lambda: worker.get("/health")["counted"] >= 1_000, "1,000 counted")
        before.update(worker.get("/health"))  # a lower bound: it may read a few more
        worker.kill()  # SIGKILL: no shutdown, no final commit, no flush

    def recover() -> None:
        worker.extra_env = {}
        worker.start()
        worker.wait_healthy()
        assert worker.get("/health")["restored_events"] > 0
        worker.wait_for(lambda: worker.get("/counts") == expected, "exact counts after crash")
        after.update(worker.get("/health"))

    before: dict[str, int] = {}
    after: dict[str, int] = {}
    try:
        await asyncio.to_thread(crash)
        await _publish(settings, rest)  # the stream goes on while the worker is down
        await asyncio.to_thread(recover)
    finally:
        await asyncio.to_thread(worker.stop)
    # Records read by both runs: everything the first run read (it committed nothing). Those
    # whose count had reached the events table came back with it, and were each recognised
    # when read again; the others' counts died with the process and were counted afresh. The
    # exact final counts say that none was counted twice.
    redelivered = before["processed"] + after["processed"] - len(stream.events)
    assert redelivered >= 1_000, (before, after)
    assert after["duplicates"] >= after["restored_events"] > 0, after


def _run_to_exact_counts(worker: WorkerProcess, stream: stream_truth.GeneratedStream) -> None:
    """Start the worker, wait until its counts are the stream's truth, stop it."""
    worker.start()
    try:
        worker.wait_healthy()
        worker.wait_for(lambda: worker.get("/counts") == stream.expected_counts(), "exact counts")
    finally:
        worker.stop()


async def test_a_worker_for_a_new_prefix_on_the_same_machine_starts_clean(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    # Tried as a new user would: one feed, stopped, then another on the same data directory.
    # Before, the second crashed at start with Faust's ConsistencyError (the first feed's
    # persisted changelog offsets were read against the second feed's empty changelog).
    state_dir = tmp_path / "worker"
    for seed in (5, 6):
        settings = await make_settings(grace_seconds=3_600)
        stream = stream_truth.generate(steps=300, seed=seed)
        await _publish(settings, stream.events)
        worker = WorkerProcess(settings, state_dir)
        await asyncio.to_thread(_run_to_exact_counts, worker, stream)
    dirs = sorted(p.relative_to(state_dir) for p in (state_dir / "worker").glob("*/*"))
    assert len(dirs) == 2, dirs  # one state directory per cluster and app id


async def test_state_past_its_changelog_is_discarded_with_one_warning(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    # The changelog (and the group's offsets) deleted under a worker's feet, as after a reset
    # of the broker's data that kept its cluster id: the local RocksDB state now describes a
    # history the cluster does not have. Before, the worker stopped with ConsistencyError.
    from aiokafka.admin import AIOKafkaAdminClient

    settings = await make_settings(grace_seconds=3_600)
    stream = stream_truth.generate(steps=300, seed=9)
    await _publish(settings, stream.events)
    state_dir = tmp_path / "worker"
    first = WorkerProcess(settings, state_dir)
    await asyncio.to_thread(_run_to_exact_counts, first, stream)
    app_id = f"{settings.topic_prefix}-worker"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap)
    await admin.start()
    try:
        changelogs = [t for t in await admin.list_topics() if t.startswith(f"{app_id}-")]
        assert changelogs
        await admin.delete_topics(changelogs)
    finally:
        await admin.close()
    # And the group's source offsets back to 0, so the rebuilt tables can be exact again.
    rewind = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap, group_id=app_id, enable_auto_commit=False
    )
    await start_consumer_client(rewind)
    try:
        from aiokafka import TopicPartition

        sources = [
            TopicPartition(settings.topic(name), p)
            for name in ("account-disrupted", "network-identified", "report-released")
            for p in range(settings.partitions)
        ]
        rewind.assign(sources)
        await rewind.commit(dict.fromkeys(sources, 0))
    finally:
        await rewind.stop()

    second = WorkerProcess(settings, state_dir)
    await asyncio.to_thread(
        _run_to_exact_counts, second, stream
    )  # healthy, and exact again from the source topics
    log = second.log_path.read_text()
    assert log.count("discarding the local worker state in") == 1, second.tail()
    assert "ConsistencyError" not in log
