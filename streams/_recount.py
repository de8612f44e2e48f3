"""Counts recomputed from the history alone, for ``disruptfeed audit recount``.

Every record of the event topics, up to the end offsets when the recount starts (committed
records only), goes through the worker's own :class:`~streams._processor.Processor` with the
configured rules and grace, so the result is what a worker that read the whole history would
report. The final counts do not depend on how partitions interleave: lateness and retention
are decided per partition, whose order the log fixes.
"""

from __future__ import annotations

__all__ = ["AlertDiff", "CountDiff", "Recount", "diff_alerts", "diff_counts", "recount"]

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from consumers._kafka import partitions_of, start_consumer
from disruptfeed.audit._checkpoint import read_spans
from disruptfeed.settings import Settings
from schemas import Alert
from streams._processor import Processor

Counts = dict[str, dict[str, dict[str, int]]]


@dataclass(slots=True)
class Recount:
    """A processor that has counted the whole history, and the alerts it raised on the way."""

    processor: Processor
    alerts: list[Alert] = field(default_factory=list)


async def recount(
    settings: Settings, on_progress: Callable[[int], object] | None = None
) -> Recount:
    """Count every stored event once, as the worker does, raising the alerts it would."""
    processor = Processor.for_settings(settings)
    topic_types = processor.topic_types
    result = Recount(processor)
    consumer = await start_consumer(settings)
    try:
        spans = {
            (topic, p): (0, 2**63 - 1)
            for topic in topic_types
            for p in await partitions_of(consumer, topic, settings.bootstrap)
        }
        done = 0
        async for record in read_spans(consumer, spans):
            outcome = processor.process(
                record.topic,
                record.partition,
                record.offset,
                record.key,
                record.value,
                record.headers or (),
                timestamp_ms=record.timestamp,
            )
            result.alerts.extend(outcome.alerts)
            done += 1
            if on_progress is not None and done % 1_000 == 0:
                on_progress(1_000)
    finally:
        await consumer.stop()
    return result


@dataclass(frozen=True, slots=True)
class CountDiff:
    """One count that differs: where, which window, ours (history) and theirs (worker)."""

    region: str
    event_type: str
    window: str
    history: int
    worker: int

    def __str__(self) -> str:
        return (
            f"{self.region} {self.event_type} {self.window}: history {self.history}, "
            f"worker {self.worker} ({self.worker - self.history:+d})"
        )


def diff_counts(history: Counts, worker: Any) -> list[CountDiff]:
    """Every (region, event type, window) whose count differs; a missing one counts as 0."""
    out: list[CountDiff] = []
    theirs: Counts = worker if isinstance(worker, dict) else {}
    for region in sorted({*history, *theirs}):
        ours_r, theirs_r = history.get(region, {}), theirs.get(region, {})
        for event_type in sorted({*ours_r, *theirs_r}):
            ours_t, theirs_t = ours_r.get(event_type, {}), theirs_r.get(event_type, {})
            for window in sorted({*ours_t, *theirs_t}):
                a, b = int(ours_t.get(window, 0)), int(theirs_t.get(window, 0))
                if a != b:
                    out.append(CountDiff(region, event_type, window, a, b))
    return out


@dataclass(frozen=True, slots=True)
class AlertDiff:
    """An alert raised from history but not on the topic (``missing``), or the other way."""

    kind: str
    alert: Alert

    def __str__(self) -> str:
        a = self.alert
        return (
            f"{self.kind}: {a.alert_id} {a.rule} {a.region} {a.status} repeat {a.repeat} "
            f"evaluated {a.evaluated_at.isoformat()}"
        )


def diff_alerts(
    derived: list[Alert], published: list[Alert], since: dt.datetime, until: dt.datetime
) -> tuple[list[AlertDiff], int]:
    """Alerts evaluated in ``[since, until)`` that only one side has, and the topic's repeats.

    Alert ids are derived from fingerprint, status, start and repeat, so the same transitions
    have the same ids on both sides. A record published twice (a worker restarted before it
    committed) is a repeat, not a difference; it is counted and returned.
    """

    def within(alerts: list[Alert]) -> dict[Any, Alert]:
        return {a.alert_id: a for a in alerts if since <= a.evaluated_at < until}

    ours, theirs = within(derived), within(published)
    repeats = sum(1 for a in published if since <= a.evaluated_at < until) - len(theirs)
    diffs = [AlertDiff("missing", a) for k, a in ours.items() if k not in theirs]
    diffs += [AlertDiff("unexpected", a) for k, a in theirs.items() if k not in ours]
    diffs.sort(key=lambda d: (d.alert.evaluated_at, str(d.alert.alert_id)))
    return diffs, repeats
