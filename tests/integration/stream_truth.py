"""A generated event stream whose exact counts are known by construction.

The stream advances in event time for every region together; on top of that it mixes in
out-of-order events (within the grace period), late events (days behind, beyond grace),
duplicates (the same event again) and bad records. The expected counts are computed here with
plain loops, independently of the worker's code.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from dataclasses import dataclass, field

from aiokafka.partitioner import murmur2

from schemas import AccountDisrupted, Actor, EventBase, NetworkIdentified, ReportReleased

T0 = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
GRACE = dt.timedelta(hours=1)
REGIONS = ("RU", "CN", "IR", "KP", "KH", "US")
WINDOWS = {"1h": dt.timedelta(hours=1), "24h": dt.timedelta(days=1), "7d": dt.timedelta(days=7)}


@dataclass
class GeneratedStream:
    """Events in publish order, plus what the worker must end up with."""

    events: list[EventBase] = field(default_factory=list)
    late_ids: set[uuid.UUID] = field(default_factory=set)
    duplicates: int = 0

    def unique(self) -> dict[uuid.UUID, EventBase]:
        return {e.event_id: e for e in self.events}

    def expected_counts(self, partitions: int = 3) -> dict[str, dict[str, dict[str, int]]]:
        """Windows end at each series' stream time: the latest on-time event of its partition.

        A series' partition is its event type's topic and the partition Kafka's default
        partitioner gives the region key (murmur2), as the feed's producer sends it.
        """
        unique = self.unique()
        on_time = [e for e in unique.values() if e.event_id not in self.late_ids]
        marks: dict[tuple[str, int], dt.datetime] = {}
        for event in on_time:
            source = _source(event, partitions)
            marks[source] = max(marks.get(source, event.occurred_at), event.occurred_at)
        out: dict[str, dict[str, dict[str, int]]] = {}
        for event in unique.values():
            row = out.setdefault(event.region, {}).setdefault(
                event.type, {"1h": 0, "24h": 0, "7d": 0, "total": 0}
            )
            row["total"] += 1
            if event.event_id in self.late_ids:
                continue
            now = marks[_source(event, partitions)]
            for name, size in WINDOWS.items():
                if now - size < event.occurred_at <= now:
                    row[name] += 1
        return out

    def expected_late(self) -> dict[tuple[str, str], int]:
        unique = self.unique()
        late: dict[tuple[str, str], int] = {}
        for event_id in self.late_ids:
            event = unique[event_id]
            late[(event.region, event.type)] = late.get((event.region, event.type), 0) + 1
        return late


def _source(event: EventBase, partitions: int) -> tuple[str, int]:
    return event.type, (murmur2(event.region.encode()) & 0x7FFFFFFF) % partitions


def _actor(region: str) -> Actor:
    return Actor(region=region, name=f"op-{region.lower()}", attribution="criminal")


def account(region: str, when: dt.datetime, rng: random.Random) -> AccountDisrupted:
    return AccountDisrupted(
        event_id=uuid.UUID(int=rng.getrandbits(128), version=4),
        occurred_at=when,
        recorded_at=when,
        source="urn:disruptfeed:test",
        actor=_actor(region),
        synthetic=True,
        network_id=f"net-{region.lower()}",
        platform="ChatGPT",
        accounts=rng.randint(1, 9),
        activity="scam",
        reason="generated for a test",
    )


def network(region: str, when: dt.datetime, rng: random.Random) -> NetworkIdentified:
    return NetworkIdentified(
        event_id=uuid.UUID(int=rng.getrandbits(128), version=4),
        occurred_at=when,
        recorded_at=when,
        source="urn:disruptfeed:test",
        actor=_actor(region),
        network_id=f"net-{region.lower()}-{rng.randrange(1000)}",
        operation_name="Generated",
        activity="scam",
    )


def report(when: dt.datetime, rng: random.Random) -> ReportReleased:
    return ReportReleased(
        event_id=uuid.UUID(int=rng.getrandbits(128), version=4),
        occurred_at=when,
        recorded_at=when,
        source="urn:disruptfeed:test",
        actor=Actor(region="unknown", attribution="unknown"),
        report_id=f"report-{rng.randrange(10**6)}",
        title="Generated report",
        url="https://example.org/r",
        published=when.date(),
    )


BURST_REGION = "NG"


def generate(steps: int = 1_200, seed: int = 7, *, burst: bool = False) -> GeneratedStream:
    """``steps`` ticks of two minutes; at each tick one event, sometimes with a twist.

    With ``burst``, the otherwise silent region NG gets six disruptions in six consecutive ticks
    from tick 300 (a burst), then one every 90 ticks (three hours) from tick 400.
    """
    rng = random.Random(seed)
    stream = GeneratedStream()
    for step in range(steps):
        now = T0 + dt.timedelta(minutes=2 * step)
        if burst and (300 <= step < 306 or (step >= 400 and step % 90 == 0)):
            stream.events.append(account(BURST_REGION, now, rng))
        region = REGIONS[step % len(REGIONS)]
        roll = rng.random()
        if step % 97 == 0:
            stream.events.append(report(now, rng))
        elif step % 13 == 0:
            stream.events.append(network(region, now, rng))
        elif step > 60 and roll < 0.10:
            # Out of order, but within grace: lands in its (earlier) windows.
            behind = dt.timedelta(minutes=rng.randint(5, 40))
            stream.events.append(account(region, now - behind, rng))
        elif step > 60 and roll < 0.15:
            # Days behind: beyond grace, so it counts in totals and as late only.
            late = account(region, now - dt.timedelta(days=rng.randint(2, 5)), rng)
            stream.events.append(late)
            stream.late_ids.add(late.event_id)
        elif step > 60 and roll < 0.20:
            # The same event again (a producer retry or a replayed file): counts once.
            stream.events.append(rng.choice(stream.events[-50:]))
            stream.duplicates += 1
        else:
            stream.events.append(account(region, now, rng))
    return stream
