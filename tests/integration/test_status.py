"""`disruptfeed status` against the real broker and a real worker."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from disruptfeed.broker import free_port
from disruptfeed.settings import Settings
from disruptfeed.topics import EVENT_TOPICS
from producers import FeedProducer
from tests.conftest import SettingsFactory
from tests.factories import account, network
from tests.integration.helpers import ng_burst_rules
from tests.integration.worker import POLL_SECONDS, WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RULES = ng_burst_rules()


def _status(
    settings: Settings, url: str, token: str, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The command as a person runs it: flags for where things are, the prefix from the env."""
    flags = ["--bootstrap", settings.bootstrap, "--url", url, "--token", token]
    return subprocess.run(
        [sys.executable, "-m", "disruptfeed", "status", *flags, *extra],
        env={
            **os.environ,
            "DISRUPTFEED_TOPIC_PREFIX": settings.topic_prefix,
            "DISRUPTFEED_DATA_DIR": str(settings.data_dir),
            **(env or {}),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _doc(settings: Settings, url: str, token: str) -> dict[str, Any]:
    done = _status(settings, url, token, "--output", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


def _until(what: str, check: Any, timeout: float = 120) -> Any:
    """Poll ``check`` (returning a value or None) until it returns a value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last is not None:
            return last
        time.sleep(POLL_SECONDS)
    raise AssertionError(f"timed out waiting for {what}")


async def _history(make_settings: SettingsFactory) -> tuple[Settings, int]:
    """Fresh topics holding 8 events (6 of NG, enough to alert) and 2 bad records; the count."""
    settings = await make_settings()
    events = [account("NG", minutes=i) for i in range(6)] + [network("CN"), account("RU")]
    async with FeedProducer(settings) as producer:
        assert all(o.ok for o in await producer.publish_many(events))
    raw = AIOKafkaProducer(bootstrap_servers=settings.bootstrap)
    await raw.start()
    try:  # two records the worker must dead-letter
        for value in (b"\xff not json", b"{truncated"):
            await raw.send_and_wait(settings.topic("account-disrupted"), value, key=b"NG")
    finally:
        await raw.stop()
    return settings, len(events) + 2


def test_status_shows_broker_topics_worker_lag_alerts_and_dead_letters(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings, records = asyncio.run(_history(make_settings))
    worker = WorkerProcess(settings, tmp_path / "worker", rules=tmp_path / "rules.toml")
    worker.rules.write_text(RULES)  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{worker.port}"

    # Before the worker: the cluster is there, the worker is not, everything is lag.
    before = _doc(settings, url, worker.token)
    assert before["broker"]["ok"] is True
    assert before["broker"]["cluster_id"]
    port = int(settings.bootstrap.rsplit(":", 1)[1])
    assert port in {b["port"] for b in before["broker"]["brokers"]}
    assert before["workers"]["ok"] is True, before["workers"]
    assert before["workers"]["members"] == []
    assert before["workers"]["api"]["ok"] is False
    assert before["workers"]["api"]["error"].startswith(f"no worker answers at {url}")
    assert before["alerts"]["ok"] is False
    assert before["lag"]["total"] == records
    assert all(p["committed"] is None for p in before["lag"]["partitions"])
    assert before["dead_letters"]["last_hour"] == 0

    topics = {t["name"]: t for t in before["topics"]["topics"]}
    assert before["topics"]["problems"] == []
    assert all(t["exists"] for t in topics.values())
    source = topics[settings.topic("account-disrupted")]
    assert (source["partitions"], source["replication_factor"]) == (3, 1)
    assert (source["cleanup_policy"], source["min_insync_replicas"]) == ("delete", "1")
    assert topics[settings.topic("subscriptions")]["cleanup_policy"] == "compact"

    worker.start()
    try:
        worker.wait_healthy()

        def settled() -> dict[str, Any] | None:
            doc = _doc(settings, url, worker.token)
            done = (
                doc["lag"]["ok"]
                and doc["lag"]["total"] == 0
                and doc["dead_letters"].get("last_hour") == 2
                and doc["alerts"].get("firing") == 1
            )
            return doc if done else None

        doc = _until("the worker to catch up, dead-letter and alert", settled)
        sources = {settings.topic(t) for t in EVENT_TOPICS}
        lag = doc["lag"]["partitions"]
        assert {p["topic"] for p in lag} == sources
        assert len(lag) == 9
        assert all(p["lag"] == 0 for p in lag), lag
        # The worker commits where it read; a partition it never read from has no commit.
        assert all(p["committed"] == p["end"] for p in lag if p["end"]), lag
        assert all(p["committed"] is None for p in lag if not p["end"]), lag
        assert sum(p["end"] for p in lag) == records

        workers = doc["workers"]
        assert workers["group"] == f"{settings.topic_prefix}-worker"
        assert workers["state"] == "Stable"
        [member] = workers["members"]
        assert member["url"] == url
        assert member["client_host"].lstrip("/") == "127.0.0.1"
        assert member["partitions"] == {t: [0, 1, 2] for t in sorted(sources)}
        assert workers["api"]["ok"] is True
        assert workers["api"]["status"] == "ok"

        [alert] = doc["alerts"]["alerts"]
        assert (alert["rule"], alert["region"], alert["severity"]) == ("ng-burst", "NG", "critical")
        assert doc["dead_letters"]["topic"] == settings.topic("dead-letter")

        # One screen for people: every section, the worker and its partitions.
        table = _status(settings, url, worker.token)
        assert table.returncode == 0, table.stderr
        text = table.stdout
        for head in ("broker ", "topics ", "workers ", "lag ", "alerts ", "dead letters "):
            assert f"\n{head}" in text, text
        assert f"{url} (host 127.0.0.1): account-disrupted 0,1,2;" in text
        assert "1 firing" in text
        assert "2 in the last hour" in text
        assert "0 records behind" in text
        assert table.stderr == ""

        # jsonl: one object per section.
        lines = _status(settings, url, worker.token, "--output", "jsonl").stdout.splitlines()
        sections = ["broker", "topics", "workers", "lag", "alerts", "dead_letters"]
        assert [json.loads(line)["section"] for line in lines] == sections
    finally:
        worker.stop()


def test_status_flags_topics_that_differ_from_the_settings(make_settings: SettingsFactory) -> None:
    async def made() -> Settings:
        return await make_settings()

    settings = asyncio.run(made())
    nobody = f"http://127.0.0.1:{free_port()}"
    four = {"DISRUPTFEED_PARTITIONS": "4"}
    done = _status(settings, nobody, "t", "--output", "json", env=four)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    problems = doc["topics"]["problems"]
    wanted = settings.topic("account-disrupted") + ": 3 partitions, settings want 4"
    assert wanted in problems
    # the same lines 'topics create' refuses with
    created = subprocess.run(
        [
            sys.executable,
            "-m",
            "disruptfeed",
            "topics",
            "create",
            "--bootstrap",
            settings.bootstrap,
        ],
        env={**os.environ, "DISRUPTFEED_TOPIC_PREFIX": settings.topic_prefix, **four},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert created.returncode != 0
    for line in problems:
        assert line in created.stderr
    assert "\n  ! " + wanted in _status(settings, nobody, "t", env=four).stdout
