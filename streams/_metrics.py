"""The worker's metrics (``GET /metrics``) and readiness (``GET /ready``).

``/metrics`` is Prometheus's text format, from a registry of the worker's own: the counters are
the plain ints of :class:`~streams._processor.Stats`, read at scrape time by
:class:`WorkerCollector`; the processing latency is a :class:`~disruptfeed._metrics.Buckets` the
agent fills once per batch; consumer lag comes from a background
:class:`~disruptfeed._metrics.LagMonitor` (its source partitions, its group). It needs the
bearer token like every route but ``/health`` and ``/ready``.

``/health`` says the process is alive (its event loop answered); ``/ready`` says it is worth
sending queries to and counting on: 200 once it has source partitions assigned, their tables
restored and its lag measured at most ``DISRUPTFEED_READY_MAX_LAG`` records; 503 with a JSON
``reason`` otherwise.
"""

from __future__ import annotations

__all__ = ["WorkerCollector", "readiness", "register_metrics_views", "worker_collectors"]

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from disruptfeed._metrics import BuildInfoCollector, histogram, lag_families, metrics_body
from streams._processor import DEAD_LETTER_REASONS

if TYPE_CHECKING:
    from streams.app import WorkerState

REASONS = (*(code for _, code in DEAD_LETTER_REASONS), "internal", "handling-failed")
"""Every reason code dead letters are counted under (see streams._processor)."""


def readiness(state: WorkerState) -> tuple[bool, dict[str, Any]]:
    """Whether the worker is ready, and the JSON /ready answers with."""
    monitor = state.lag
    bound = state.settings.ready_max_lag
    parts = state.source_partitions()
    facts: dict[str, Any] = {
        "partitions": sorted(f"{t}:{p}" for t, p in parts),
        "recovered": state.recovered,
        "lag": monitor.total if monitor is not None else None,
        "max_lag": bound,
    }
    reason = None
    if not state.recovered:
        reason = "recovering: the tables of the assigned partitions are being restored"
    elif not parts:
        reason = "no source partitions assigned (joining the group, or more workers than topics)"
    elif monitor is None or monitor.measured_at is None:
        reason = "lag not measured yet"
    elif monitor.error is not None:
        reason = f"lag could not be measured: {monitor.error}"
    elif set(monitor.lags) != parts:
        reason = "lag not measured yet for the partitions just assigned"
    elif monitor.total > bound:
        reason = f"{monitor.total} records behind, more than {bound} (DISRUPTFEED_READY_MAX_LAG)"
    if reason is not None:
        return False, {"status": "not ready", "reason": reason, **facts}
    return True, {"status": "ready", **facts}


class WorkerCollector(Collector):
    """The worker's counters, histograms and gauges, read from its state at scrape time."""

    def __init__(self, state: WorkerState) -> None:
        self.state = state

    def describe(self) -> Iterator[Metric]:
        """The families (without samples): names and types for the registry."""
        yield from self._families(describe=True)

    def collect(self) -> Iterator[Metric]:
        """The families and their current values."""
        yield from self._families(describe=False)

    def _families(self, *, describe: bool) -> Iterator[Metric]:
        state = self.state
        stats = state.processor.stats
        types = sorted(set(state.processor.topic_types.values()))

        def by_type(name: str, doc: str, values: dict[str, int]) -> CounterMetricFamily:
            family = CounterMetricFamily(name, doc, labels=["type"])
            if not describe:
                for event_type in sorted({*types, *values}):
                    family.add_metric([event_type], values.get(event_type, 0))
            return family

        def total(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, value=None if describe else value)

        yield total(
            "disruptfeed_events_processed",
            "Source records the worker has handled (counted, duplicate or dead-lettered).",
            stats.processed,
        )
        yield by_type(
            "disruptfeed_events_counted",
            "Events counted, by event type (each event id once).",
            stats.counted_by_type,
        )
        yield by_type(
            "disruptfeed_events_late",
            "Events counted late (behind their partition's stream time by more than "
            "DISRUPTFEED_GRACE_SECONDS: in the totals, not in the windows), by event type.",
            stats.late_by_type,
        )
        yield total(
            "disruptfeed_events_duplicate",
            "Records skipped as duplicates: an event id already counted, or a record read again "
            "after a restart whose effects the tables already hold.",
            stats.duplicates,
        )
        dead = CounterMetricFamily(
            "disruptfeed_events_dead_lettered",
            "Records sent to the dead-letter topic, by reason code.",
            labels=["reason"],
        )
        if not describe:
            by_reason = stats.dead_lettered_by_reason
            for reason in sorted({*REASONS, *by_reason}):
                dead.add_metric([reason], by_reason.get(reason, 0))
        yield dead
        alerts = CounterMetricFamily(
            "disruptfeed_alerts",
            "Alert messages published, by rule and state (firing, repeats included; resolved).",
            labels=["rule", "state"],
        )
        firing = GaugeMetricFamily(
            "disruptfeed_alerts_firing",
            "Alerts firing now on this worker's partitions, by rule.",
            labels=["rule"],
        )
        if not describe:
            engine = state.processor.engine
            rules = [rule.name for rule in engine.rules.rules]
            sent = stats.alerts_by_rule
            keys = {(rule, status) for rule in rules for status in ("firing", "resolved")}
            for rule, status in sorted(keys | set(sent)):
                alerts.add_metric([rule, status], sent.get((rule, status), 0))
            now: dict[str, int] = dict.fromkeys(rules, 0)
            for alert in engine.active():
                now[alert.rule] = now.get(alert.rule, 0) + 1
            for rule, n in sorted(now.items()):
                firing.add_metric([rule], n)
        yield alerts
        yield firing
        yield histogram(
            "disruptfeed_processing_latency_seconds",
            "From a record's timestamp (its publish time) to the end of the batch that handled it.",
            [],
            [] if describe else [([], state.latency)],
        )
        gauges = [
            (
                "disruptfeed_table_restore_seconds",
                "How long the last recovery took: from the rebalance to the counts rebuilt from "
                "the restored tables.",
                state.restore_seconds or 0.0,
            ),
            (
                "disruptfeed_table_restored_events",
                "Events the last recovery rebuilt the counts from.",
                float(state.restored_events),
            ),
            (
                "disruptfeed_stream_time_seconds",
                "The latest event time (occurred_at) this worker has seen, as Unix time.",
                state.processor.store.now_ms / 1000 if state.processor.store.now_ms else 0.0,
            ),
            (
                "disruptfeed_ready",
                "1 when /ready answers 200, else 0.",
                1.0 if not describe and readiness(state)[0] else 0.0,
            ),
        ]
        for name, doc, value in gauges:
            yield GaugeMetricFamily(name, doc, value=None if describe else value)
        if state.lag is not None:
            yield from lag_families(state.lag)


def worker_collectors(state: WorkerState) -> list[Collector]:
    """Everything the worker's /metrics exposes."""
    return [WorkerCollector(state), BuildInfoCollector("worker")]


def register_metrics_views(app: Any, state: WorkerState) -> None:
    """Add ``/metrics`` and ``/ready`` to a Faust app."""

    @app.page("/metrics")  # type: ignore[untyped-decorator]
    async def metrics(web: Any, req: Any) -> Any:
        body, content_type = metrics_body(state.registry)
        return web.bytes(body, headers={"Content-Type": content_type})

    @app.page("/ready")  # type: ignore[untyped-decorator]
    async def ready(web: Any, req: Any) -> Any:
        ok, answer = readiness(state)
        return web.bytes(
            orjson.dumps(answer, option=orjson.OPT_SORT_KEYS),
            content_type="application/json",
            status=200 if ok else 503,
        )
