"""Event factories shared by unit and integration tests."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from schemas import AccountDisrupted, Actor, Alert, NetworkIdentified, ReportReleased, codec
from streams._alerts import Episode, fingerprint

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def account(
    region: str = "RU", *, minutes: float = 0, accounts: int = 3, **kw: Any
) -> AccountDisrupted:
    when = T0 + dt.timedelta(minutes=minutes)
    fields: dict[str, Any] = {
        "event_id": uuid.uuid4(),
        "occurred_at": when,
        "recorded_at": when + dt.timedelta(seconds=30),
        "source": "urn:disruptfeed:test",
        "actor": Actor(region=region, name="Test Actor", attribution="state-linked"),
        "synthetic": True,
        "network_id": "test-network",
        "platform": "ChatGPT",
        "accounts": accounts,
        "activity": "influence-operation",
        "reason": "test",
    }
    fields.update(kw)
    return AccountDisrupted(**fields)


def network(region: str = "CN", **kw: Any) -> NetworkIdentified:
    fields: dict[str, Any] = {
        "event_id": uuid.uuid4(),
        "occurred_at": T0,
        "recorded_at": T0,
        "source": "urn:disruptfeed:test",
        "actor": Actor(region=region, attribution="likely state-linked"),
        "network_id": "spamouflage",
        "operation_name": "Spamouflage",
        "activity": "influence-operation",
        "targets": ("US",),
        "platforms": ("X", "YouTube"),
    }
    fields.update(kw)
    return NetworkIdentified(**fields)


def report(**kw: Any) -> ReportReleased:
    fields: dict[str, Any] = {
        "event_id": uuid.uuid4(),
        "occurred_at": T0,
        "recorded_at": T0,
        "source": "urn:disruptfeed:test",
        "actor": Actor(region="unknown", attribution="unknown"),
        "report_id": "test-report",
        "title": "Test report",
        "url": "https://example.org/report",
        "published": T0.date(),
        "networks": ("spamouflage",),
    }
    fields.update(kw)
    return ReportReleased(**fields)


def as_dict(event: Any) -> dict[str, Any]:
    return codec.to_dict(event)


def make_alert(
    region: str = "RU",
    *,
    rule: str = "ru-surge",
    severity: str = "critical",
    status: str = "firing",
    n: int = 0,
    kind: str = "threshold",
) -> Alert:
    """A valid alert; ``n`` makes episodes (and so fingerprints and ids) distinct."""
    labels = {"region": region, "event_type": "account.disrupted", "n": str(n)}
    starts = T0 + dt.timedelta(minutes=n)
    episode = Episode(
        rule=rule,
        kind=kind,  # type: ignore[arg-type]
        severity=severity,  # type: ignore[arg-type]
        labels=labels,
        starts_ms=int(starts.timestamp() * 1000),
        last_sent_ms=int(starts.timestamp() * 1000),
        last_eval_ms=int(starts.timestamp() * 1000),
        window="1h",
        value=5,
        threshold=5.0,
        summary=f"{region} account.disrupted: 5 in 1h >= 5 (#{n})",
    )
    fp = fingerprint(rule, labels)
    if status == "firing":
        return episode.alert(fp, "firing")
    return episode.alert(fp, "resolved", ends_ms=episode.starts_ms + 60_000)
