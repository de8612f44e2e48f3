"""The sample data set: real report facts plus seeded synthetic account disruptions.

``ReportReleased`` and ``NetworkIdentified`` events come from the public threat-report facts
shipped in ``disruptfeed/data/`` (report dates, network names, regions, attribution). No report
gives per-day account counts, so ``AccountDisrupted`` events are generated from a seed, in the
weeks before each report, and marked ``synthetic=True``. The same seed always gives the same
events, ids included.
"""

from __future__ import annotations

__all__ = ["DEFAULT_SEED", "SampleSpec", "build_sample", "load_networks", "load_reports", "slug"]

import datetime as dt
import random
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Any

import orjson

from schemas import (
    AccountDisrupted,
    Actor,
    Confidence,
    EventBase,
    NetworkIdentified,
    ReportReleased,
)

DEFAULT_SEED = 20240214
_NAMESPACE = uuid.UUID("5d7c3c1e-2f6b-4f7a-9d55-0f3a4b1f2c77")
_SOURCE = "urn:disruptfeed:sample"
_CONFIDENCE: dict[str, Confidence] = {
    "state-linked": "high",
    "criminal": "high",
    "commercial": "high",
    "likely state-linked": "moderate",
    "likely commercial": "moderate",
    "unknown": "low",
}


@dataclass(frozen=True, slots=True)
class SampleSpec:
    """How to generate the synthetic part of the sample.

    Attributes:
        seed: random seed; the same seed gives the same events.
        accounts_per_network: account-disruption events generated for each network.
        lead_days: how many days before its report a network's disruptions are spread over.
    """

    seed: int = DEFAULT_SEED
    accounts_per_network: int = 20
    lead_days: int = 21


def _load(name: str) -> list[dict[str, Any]]:
    text = resources.files("disruptfeed").joinpath("data", name).read_bytes()
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


def load_reports() -> list[dict[str, Any]]:
    """The report facts, one dict per report, in file order."""
    return _load("reports.jsonl")


def load_networks() -> list[dict[str, Any]]:
    """The network facts, one dict per mention of a network in a report, in file order."""
    return _load("networks.jsonl")


def slug(text: str, limit: int = 64) -> str:
    """A stable lower-case identifier for a name: ``"STORM-2035 (x)"`` -> ``"storm-2035-x"``."""
    value = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return value[:limit].rstrip("-") or "unnamed"


def _day(value: str) -> dt.datetime:
    return dt.datetime.combine(dt.date.fromisoformat(value), dt.time(12), tzinfo=dt.UTC)


def _clip(items: list[str] | None) -> tuple[str, ...]:
    return tuple(item[:256] for item in (items or ()) if item)[:64]


def _report_events(
    reports: list[dict[str, Any]], networks: list[dict[str, Any]]
) -> Iterator[EventBase]:
    for report in reports:
        covered = [n for n in networks if n["report_id"] == report["report_id"]]
        # A report names many actors; only when there is one does the envelope name it.
        actor = (
            _actor(covered[0])
            if len(covered) == 1
            else Actor(region="unknown", attribution="unknown", confidence="low")
        )
        when = _day(report["published"])
        claim = report.get("cumulative_networks_claim")
        yield ReportReleased(
            event_id=uuid.uuid5(_NAMESPACE, f"report:{report['report_id']}"),
            occurred_at=when,
            recorded_at=when,
            source=f"{_SOURCE}:{slug(report['publisher'])}",
            actor=actor,
            report_id=slug(report["report_id"], 128),
            title=report["title"][:2000],
            url=report["sources"][0],
            published=dt.date.fromisoformat(report["published"]),
            date_precision=report["date_precision"],
            networks=tuple(slug(n["name"]) for n in covered),
            cumulative_claims=(claim[:256],) if claim else (),
        )


def _actor(network: dict[str, Any]) -> Actor:
    return Actor(
        region=network["actor_region"],
        name=network["name"][:256],
        attribution=network["attribution"],
        confidence=_CONFIDENCE[network["attribution"]],
    )


def _network_events(
    reports: dict[str, dict[str, Any]], networks: list[dict[str, Any]]
) -> Iterator[EventBase]:
    for network in networks:
        report = reports[network["report_id"]]
        # Identified an hour before the report goes out, so the report follows its networks.
        when = _day(report["published"]) - dt.timedelta(hours=1)
        yield NetworkIdentified(
            event_id=uuid.uuid5(_NAMESPACE, f"network:{network['report_id']}:{network['name']}"),
            occurred_at=when,
            recorded_at=when,
            source=f"{_SOURCE}:{slug(report['publisher'])}",
            actor=_actor(network),
            network_id=slug(network["name"]),
            operation_name=network["name"][:256],
            activity=network["activity"],
            targets=_clip(network.get("targets")),
            platforms=_clip(network.get("platforms")),
            language=network.get("language"),
        )


def _account_events(
    spec: SampleSpec, reports: dict[str, dict[str, Any]], networks: list[dict[str, Any]]
) -> Iterator[EventBase]:
    rng = random.Random(spec.seed)  # noqa: S311 - reproducible sample data, not secrets
    for network in networks:
        report = reports[network["report_id"]]
        end = _day(report["published"]) - dt.timedelta(hours=2)
        platforms = network.get("platforms") or ["ChatGPT"]
        # Disruptions cluster: most of a network's takedowns happen in a few bursts.
        bursts = [
            end - dt.timedelta(seconds=rng.randrange(spec.lead_days * 86_400)) for _ in range(3)
        ]
        for _ in range(spec.accounts_per_network):
            centre = rng.choice(bursts)
            when = min(end, centre + dt.timedelta(seconds=rng.randrange(-1_800, 1_800)))
            yield AccountDisrupted(
                event_id=uuid.UUID(int=rng.getrandbits(128), version=4),
                occurred_at=when,
                recorded_at=when + dt.timedelta(seconds=rng.randrange(5, 600)),
                source=f"{_SOURCE}:synthetic",
                actor=_actor(network),
                synthetic=True,
                network_id=slug(network["name"]),
                platform=rng.choice(platforms)[:256],
                accounts=max(1, int(rng.paretovariate(1.5))),
                activity=network["activity"],
                reason=f"synthetic: accounts linked to {network['name']} ({network['activity']})",
            )


def build_sample(spec: SampleSpec | None = None) -> list[EventBase]:
    """Every sample event, ordered by event time (ties broken by event id)."""
    spec = spec or SampleSpec()
    reports = load_reports()
    networks = load_networks()
    by_id = {r["report_id"]: r for r in reports}
    events: list[EventBase] = [
        *_report_events(reports, networks),
        *_network_events(by_id, networks),
        *_account_events(spec, by_id, networks),
    ]
    events.sort(key=lambda e: (e.occurred_at, str(e.event_id)))
    return events
