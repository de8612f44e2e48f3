"""The embedded broker: lifecycle, and no acknowledged event lost across a restart."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from disruptfeed.broker import LocalBroker, free_port
from disruptfeed.errors import MissingToolError
from disruptfeed.settings import Settings
from disruptfeed.topics import create_topics
from producers import FeedProducer
from tests.factories import account
from tests.integration.helpers import read_all

pytestmark = pytest.mark.integration


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """A broker of this test's own, so the test may stop and start it."""
    broker = LocalBroker(
        Settings(data_dir=tmp_path, bootstrap_servers=None),
        data_dir=tmp_path / "broker",
        port=free_port(),
        controller_port=free_port(),
    )
    yield broker
    broker.stop()


@pytest.mark.slow
async def test_restart_mid_run_loses_no_acknowledged_event(own_broker: LocalBroker) -> None:
    await asyncio.to_thread(own_broker.start)
    settings = Settings(
        bootstrap_servers=own_broker.bootstrap_servers,
        topic_prefix="restart",
        request_timeout_ms=5_000,
    )
    await create_topics(settings)
    events = [account(region, minutes=i) for i in range(100) for region in ("RU", "CN", "IR")]
    chunks = [events[i : i + 30] for i in range(0, len(events), 30)]
    acknowledged: set[str] = set()
    failed = []
    half_done = asyncio.Event()
    restarted = asyncio.Event()

    async def publish() -> None:
        async with FeedProducer(settings) as producer:
            for number, chunk in enumerate(chunks):
                if number == len(chunks) // 2:
                    half_done.set()
                    await restarted.wait()
                for event, outcome in zip(chunk, await producer.publish_many(chunk), strict=True):
                    if outcome.ok:
                        acknowledged.add(str(event.event_id))
                    else:
                        failed.append(event)

    async def restart() -> None:
        await half_done.wait()
        assert await asyncio.to_thread(own_broker.stop)
        assert not own_broker.status().running
        await asyncio.to_thread(own_broker.start)
        restarted.set()

    await asyncio.wait_for(asyncio.gather(publish(), restart()), timeout=180)
    assert len(acknowledged) >= len(events) // 2
    # Anything the broker did not acknowledge is safe to send again: the id dedupes it.
    if failed:
        async with FeedProducer(settings) as producer:
            assert all(o.ok for o in await producer.publish_many(failed))
    received = {str(r.event.event_id) for r in await read_all(settings)}
    assert acknowledged <= received
    assert received == {str(e.event_id) for e in events}


@pytest.mark.slow
def test_cli_start_status_stop(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DISRUPTFEED_DATA_DIR": str(tmp_path),
        "DISRUPTFEED_BROKER_PORT": str(free_port()),
        "DISRUPTFEED_CONTROLLER_PORT": str(free_port()),
        "DISRUPTFEED_TOPIC_PREFIX": "cli",
    }
    env.pop("DISRUPTFEED_BOOTSTRAP_SERVERS", None)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "disruptfeed", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=180,
            check=False,
        )

    try:
        started = cli("broker", "start")
        assert started.returncode == 0, started.stderr
        assert "broker running at 127.0.0.1:" in started.stderr
        assert "topic cli.account-disrupted: created" in started.stderr
        again = cli("broker", "start")  # idempotent: same broker, topics already there
        assert again.returncode == 0, again.stderr
        assert "topic cli.account-disrupted: exists" in again.stderr
        status = cli("broker", "status")
        assert status.returncode == 0
        assert status.stdout.startswith("running: 127.0.0.1:")
    finally:
        stopped = cli("broker", "stop")
    assert stopped.returncode == 0
    assert "broker stopped" in stopped.stderr
    after = cli("broker", "status")
    assert after.returncode == 3
    assert after.stdout.startswith("stopped")


def test_missing_java_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # neither java nor mvn here
    broker = LocalBroker(Settings(data_dir=tmp_path, cache_dir=tmp_path / "cache"))
    with pytest.raises(MissingToolError, match="apt-get install") as info:
        broker.resolve_jars()
    assert "DISRUPTFEED_BOOTSTRAP_SERVERS" in str(info.value)
