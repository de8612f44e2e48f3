"""The Alertmanager launcher against a real Alertmanager: an alert fires, is listed, resolves."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from disruptfeed._alertmanager import Alertmanager
from tests.integration.alertmanager import WebhookSink, alertmanager_bin

__all__ = ["alertmanager_bin"]  # a fixture: pytest finds it in this module's namespace
pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
async def sink() -> AsyncIterator[WebhookSink]:
    async with WebhookSink() as webhook:
        yield webhook


@pytest.fixture
def alertmanager(
    alertmanager_bin: Path, sink: WebhookSink, tmp_path: Path
) -> Iterator[Alertmanager]:
    with Alertmanager(alertmanager_bin, tmp_path / "alertmanager", sink.url) as am:
        yield am


def _stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ours(labels: dict[str, str], status: str) -> Any:
    def matches(body: dict[str, Any]) -> bool:
        return body.get("status") == status and any(
            alert["labels"].items() >= labels.items() for alert in body.get("alerts", [])
        )

    return matches


async def test_alert_fires_is_listed_and_resolves(
    alertmanager: Alertmanager, sink: WebhookSink
) -> None:
    labels = {"alertname": "DisruptFeedLauncherTest", "region": f"eu-{uuid.uuid4().hex[:8]}"}
    starts = datetime.now(UTC)
    alert = {
        "labels": labels,
        "annotations": {"summary": "launcher integration test"},
        "startsAt": _stamp(starts),
        "endsAt": _stamp(starts + timedelta(minutes=5)),
    }
    # The urllib calls block; off the loop, so the sink can take Alertmanager's POSTs meanwhile.
    await asyncio.to_thread(alertmanager.post_alerts, [alert])

    firing = await sink.wait_for(_ours(labels, "firing"), timeout=30)
    (sent,) = firing.body["alerts"]
    assert sent["status"] == "firing"
    assert sent["labels"] == labels
    assert sent["annotations"] == {"summary": "launcher integration test"}
    assert firing.body["receiver"] == "webhook"
    assert firing.body["commonLabels"] == labels
    assert firing.body["externalURL"] == alertmanager.url

    listed = [
        a
        for a in await asyncio.to_thread(alertmanager.alerts)
        if a["labels"].items() >= labels.items()
    ]
    assert len(listed) == 1
    assert listed[0]["labels"] == labels
    assert listed[0]["status"]["state"] == "active"
    assert listed[0]["fingerprint"] == sent["fingerprint"]

    resolved_at = datetime.now(UTC)
    await asyncio.to_thread(alertmanager.post_alerts, [{**alert, "endsAt": _stamp(resolved_at)}])

    resolved = await sink.wait_for(_ours(labels, "resolved"), timeout=30)
    (done,) = resolved.body["alerts"]
    assert done["status"] == "resolved"
    assert done["labels"] == labels
    assert done["fingerprint"] == sent["fingerprint"]
    assert resolved.received_at > firing.received_at
