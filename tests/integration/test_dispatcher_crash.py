"""A dispatcher SIGKILLed in the middle of deliveries, restarted: every alert arrives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from consumers._registry import SubscriptionAdmin
from disruptfeed.broker import free_port
from disruptfeed.settings import Settings
from tests.factories import make_alert
from tests.integration.delivery import busy_for, publish_alerts, receiver, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SettingsFactory = Callable[..., Awaitable[Settings]]
ALERTS = 150


class DispatcherProcess:
    """``disruptfeed dispatcher`` in a subprocess with its own port and log."""

    def __init__(self, settings: Settings, log: Path) -> None:
        self.settings = settings
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DISRUPTFEED_")}
        env.update(
            DISRUPTFEED_BOOTSTRAP_SERVERS=self.settings.bootstrap,
            DISRUPTFEED_TOPIC_PREFIX=self.settings.topic_prefix,
            DISRUPTFEED_DISPATCHER_PORT=str(free_port()),
            DISRUPTFEED_WEBHOOK_ALLOW_PRIVATE="true",
            DISRUPTFEED_WEBHOOK_RETRY_SCHEDULE="0,0.2,0.5,1,1,1,1,1",
            DISRUPTFEED_API_TOKEN="crash-test-token",
            DISRUPTFEED_DATA_DIR=str(self.log.parent),
        )
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "disruptfeed", "-v", "dispatcher"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])


async def test_sigkill_mid_delivery_loses_nothing_and_keeps_ids_and_sequences(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = await make_settings(webhook_allow_private=True)

    async def slowish(request: web.Request, n: int) -> web.StreamResponse:
        await busy_for(0.02)  # the receiver's own work: keeps deliveries in flight
        return web.Response(status=200 if n % 7 else 500)  # and some fail, to be retried

    alerts = [make_alert(n=i) for i in range(ALERTS)]
    process = DispatcherProcess(settings, tmp_path / "dispatcher.log")
    async with receiver(slowish) as r:
        async with SubscriptionAdmin(settings) as admin:
            await admin.create(r.url)
        process.start()
        try:
            await publish_alerts(settings, alerts)
            await r.wait_for(lambda: len(r.requests) >= ALERTS // 3, "a third delivered", 60)
            process.kill()
            at_kill = {q.json["data"]["alert_id"] for q in r.requests if q.status_ok}
            process.start()
            wanted = {str(a.alert_id) for a in alerts}

            def all_delivered() -> bool:
                ok = {q.json["data"]["alert_id"] for q in r.requests if q.status_ok}
                return ok >= wanted

            try:
                await wait_until(all_delivered, "every alert delivered after the restart", 120)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{process.tail()}") from None
        finally:
            process.stop()

    assert len(at_kill) < ALERTS  # the kill came mid-delivery: the restart delivered the rest
    print(f"{len(at_kill)} of {ALERTS} delivered before the SIGKILL, {len(r.requests)} requests")
    ids: dict[str, set[str]] = {}
    sequences: dict[str, set[str]] = {}
    for q in r.requests:
        alert_id = q.json["data"]["alert_id"]
        ids.setdefault(alert_id, set()).add(q.headers["webhook-id"])
        sequences.setdefault(alert_id, set()).add(q.headers["webhook-sequence"])
    assert set(ids) == {str(a.alert_id) for a in alerts}
    # Redelivered or retried, an alert keeps one webhook-id and one sequence number...
    assert all(len(v) == 1 for v in ids.values())
    assert all(len(v) == 1 for v in sequences.values())
    # ...and the sequence numbers are 1..N with no gap and no number used twice.
    assert sorted(int(next(iter(v))) for v in sequences.values()) == list(range(1, ALERTS + 1))
