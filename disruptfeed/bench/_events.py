"""Benchmark workloads: realistic events, shaped like the sample data, and their Kafka records.

Every event is built from a template taken from the sample (``disruptfeed sample``): choosing
templates uniformly reproduces the sample's mix of event types and, among account disruptions,
its mix of actor regions (each network contributes equally there, so regions with more networks
weigh more). Ids, times and the ``synthetic`` flag are new, and each event is validated again by
its model, so the producers publish typed, validated events.
"""

from __future__ import annotations

__all__ = [
    "BURST_GAP",
    "MEAN_GAP_S",
    "T0",
    "Record",
    "burst_events",
    "encode",
    "event_chunks",
    "feed_events",
    "history_chunks",
    "rate_events",
    "region_events",
    "region_mix",
    "size_stats",
    "week_events",
]

import datetime as dt
import random
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from functools import lru_cache
from statistics import fmean
from typing import NamedTuple, TypeVar

from disruptfeed.sample import DEFAULT_SEED, build_sample
from schemas import ISO_3166_ALPHA2, UNKNOWN_REGION, AccountDisrupted, EventBase, codec

_E = TypeVar("_E", bound=EventBase)

T0 = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
"""Event time of the first generated event (any fixed instant: windows are in event time)."""

MEAN_GAP_S = 30.0
"""Mean event-time gap between consecutive events: a busy feed, ~2,900 events a day."""

BURST_GAP = dt.timedelta(hours=2)
"""Event time between consecutive bursts of :func:`burst_events`: longer than the 1 h window,
so every burst starts a fresh alert episode."""


class Record(NamedTuple):
    """One event as Kafka sees it: what every client in the benchmark sends."""

    topic: str
    """The logical topic name (``account-disrupted``, ...), without the prefix."""
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


@lru_cache(maxsize=1)
def _templates() -> tuple[tuple[EventBase, ...], tuple[AccountDisrupted, ...]]:
    sample = build_sample()
    accounts = tuple(e for e in sample if isinstance(e, AccountDisrupted))
    return tuple(sample), accounts


def _renew(template: _E, event_id: uuid.UUID, when: dt.datetime) -> _E:
    delay = template.recorded_at - template.occurred_at
    data = template.model_dump()
    data.update(event_id=event_id, occurred_at=when, recorded_at=when + delay, synthetic=True)
    # model_validate, not model_copy: a copy would skip validation, and the events must be real.
    return type(template).model_validate(data)


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def feed_events(count: int, seed: int = DEFAULT_SEED) -> list[EventBase]:
    """``count`` events like the sample's, in event-time order, ``MEAN_GAP_S`` apart on average.

    The same seed gives the same events, ids included.
    """
    return next(event_chunks(count, count, seed, T0), [])


def event_chunks(
    count: int, chunk: int, seed: int, start: dt.datetime, gap_s: float = MEAN_GAP_S
) -> Iterator[list[EventBase]]:
    everything, _ = _templates()
    rng = random.Random(seed)  # noqa: S311 - reproducible workload, not secrets
    when = start
    for first in range(0, count, chunk):
        events: list[EventBase] = []
        for _ in range(min(chunk, count - first)):
            when += dt.timedelta(seconds=round(rng.expovariate(1 / gap_s), 3))
            events.append(_renew(rng.choice(everything), _uuid(rng), when))
        yield events


def history_chunks(
    count: int, chunk: int = 50_000, seed: int = DEFAULT_SEED
) -> Iterator[list[Record]]:
    """:func:`feed_events` of ``count`` events as records, ``chunk`` at a time.

    A long history (a million events spans about a year of event time) in bounded memory: the
    events of one chunk are dropped once encoded. It ends about :data:`T0`, in the past
    whatever its length: a history running into the future would be dead-lettered
    (``future-event-time``).
    """
    start = T0 - dt.timedelta(seconds=count * MEAN_GAP_S * 1.1)
    for events in event_chunks(count, chunk, seed, start):
        yield encode(events)


def burst_events(count: int, burst: int, seed: int = DEFAULT_SEED) -> list[AccountDisrupted]:
    """Account disruptions in bursts of ``burst`` events of one region, one second apart.

    Bursts are :data:`BURST_GAP` apart in event time, so a threshold rule of ``burst`` events in
    1 h fires exactly once per burst, on its last event, and resolves before the region's next
    burst. Each burst's region is drawn like the sample's account regions.
    """
    _, accounts = _templates()
    rng = random.Random(seed)  # noqa: S311 - reproducible workload, not secrets
    events: list[AccountDisrupted] = []
    template = accounts[0]
    for index in range(count):
        number, position = divmod(index, burst)
        if position == 0:
            template = rng.choice(accounts)
        when = T0 + number * BURST_GAP + dt.timedelta(seconds=position)
        events.append(_renew(template, _uuid(rng), when))
    return events


def week_events(per_region_per_day: int, seed: int = DEFAULT_SEED) -> list[AccountDisrupted]:
    """Account disruptions for all 250 regions, evenly spread over 7 days of event time.

    The regions are every ISO 3166-1 alpha-2 code and ``unknown``: enough events to fill every
    rolling window of every region a worker can know.
    """
    _, accounts = _templates()
    rng = random.Random(seed)  # noqa: S311 - reproducible workload, not secrets
    regions = [*sorted(ISO_3166_ALPHA2), UNKNOWN_REGION]
    step = dt.timedelta(days=1) / per_region_per_day
    events: list[AccountDisrupted] = []
    for slot in range(7 * per_region_per_day):
        for offset, region in enumerate(regions):
            template = rng.choice(accounts)
            # Only the region changes; _renew validates it with the rest of the event.
            actor = template.actor.model_copy(update={"region": region})
            when = T0 + slot * step + dt.timedelta(milliseconds=offset)
            events.append(_renew(template.model_copy(update={"actor": actor}), _uuid(rng), when))
    return events


def encode(events: Sequence[EventBase]) -> list[Record]:
    """The records the project's producer would send for ``events`` (value, key, headers)."""
    return [
        Record(type(e).topic_name, codec.key(e), codec.encode(e), codec.headers(e)) for e in events
    ]


def size_stats(records: Sequence[Record]) -> dict[str, float]:
    """Encoded value sizes in bytes: mean, min and max."""
    sizes = [len(r.value) for r in records]
    return {"mean": round(fmean(sizes), 1), "min": min(sizes), "max": max(sizes)}


def region_mix(events: Sequence[EventBase], top: int = 12) -> dict[str, float]:
    """Share of each of the ``top`` commonest regions among account disruptions (0..1)."""
    regions = Counter(e.region for e in events if isinstance(e, AccountDisrupted))
    total = sum(regions.values()) or 1
    return {region: round(n / total, 3) for region, n in regions.most_common(top)}


def rate_events(days: float, per_second: float, seed: int = DEFAULT_SEED) -> list[EventBase]:
    """``days`` of event time at ``per_second`` events a second on average, like the sample's."""
    count = round(days * 86_400 * per_second)
    start = T0 - dt.timedelta(days=days)
    return next(event_chunks(count, count, seed, start, gap_s=1 / per_second), [])


def region_events(count: int, regions: int, seed: int = DEFAULT_SEED) -> list[AccountDisrupted]:
    """``count`` account disruptions spread evenly over the first ``regions`` region codes.

    At most 250: the schema takes ISO 3166-1 alpha-2 codes and ``unknown``, nothing else.
    """
    codes = [*sorted(ISO_3166_ALPHA2), UNKNOWN_REGION][:regions]
    _, accounts = _templates()
    rng = random.Random(seed)  # noqa: S311 - reproducible workload, not secrets
    when, events = T0 - dt.timedelta(seconds=count * MEAN_GAP_S), []
    for index in range(count):
        when += dt.timedelta(seconds=MEAN_GAP_S)
        data = rng.choice(accounts).model_dump()
        data["actor"]["region"] = codes[index % len(codes)]
        data.update(event_id=_uuid(rng), occurred_at=when, recorded_at=when, synthetic=True)
        events.append(AccountDisrupted.model_validate(data))
    return events
