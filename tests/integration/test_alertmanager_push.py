"""Alertmanager subscriptions: a real Alertmanager receives, routes and resolves our alerts."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from disruptfeed._alertmanager import Alertmanager
from disruptfeed.settings import Settings
from tests.factories import make_alert
from tests.integration.alertmanager import WebhookSink
from tests.integration.delivery import publish_alerts, running_dispatcher, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SettingsFactory = Callable[..., Awaitable[Settings]]


def _ours(alert: dict[str, Any], rule: str) -> bool:
    return bool(alert["labels"].get("alertname") == rule)


async def test_alertmanager_routes_fires_and_resolves_our_alerts(
    make_settings: SettingsFactory, alertmanager_bin: Path, tmp_path: Path
) -> None:
    settings = await make_settings(webhook_allow_private=True, alertmanager_resend_seconds=1)
    firing = make_alert("RU", rule="ru-burst", n=7)
    resolved = make_alert("RU", rule="ru-burst", n=7, status="resolved")
    assert firing.fingerprint == resolved.fingerprint
    async with WebhookSink() as sink:
        with Alertmanager(alertmanager_bin, tmp_path, sink.url) as am:
            async with running_dispatcher(settings) as d:
                assert d.admin is not None
                await d.admin.create(am.url, kind="alertmanager")
                await publish_alerts(settings, [firing])

                notified = await sink.wait_for(
                    lambda body: (
                        body["status"] == "firing"
                        and any(_ours(a, "ru-burst") for a in body["alerts"])
                    )
                )
                held = [a for a in await asyncio.to_thread(am.alerts) if _ours(a, "ru-burst")]
                assert len(held) == 1
                assert held[0]["status"]["state"] == "active"
                labels = held[0]["labels"]
                assert labels["region"] == "RU"
                assert labels["rule"] == "ru-burst"
                assert labels["severity"] == "critical"
                assert held[0]["annotations"]["alert_id"] == str(firing.alert_id)
                first_end = held[0]["endsAt"]

                # Re-posted before it would time out: its end moves on while it still fires.
                def extended() -> bool:
                    now = [a for a in am.alerts() if _ours(a, "ru-burst")]
                    return bool(now) and now[0]["endsAt"] > first_end

                await wait_until(extended, "the firing alert re-posted", 20)

                await publish_alerts(settings, [resolved])
                done = await sink.wait_for(
                    lambda body: (
                        body["status"] == "resolved"
                        and any(_ours(a, "ru-burst") for a in body["alerts"])
                    )
                )
    (sent,) = [a for a in notified.body["alerts"] if _ours(a, "ru-burst")]
    assert sent["labels"]["region"] == "RU"
    assert sent["annotations"]["summary"] == firing.summary
    (ended,) = [a for a in done.body["alerts"] if _ours(a, "ru-burst")]
    assert ended["status"] == "resolved"
    assert ended["fingerprint"] == sent["fingerprint"]  # Alertmanager's own: the same alert
