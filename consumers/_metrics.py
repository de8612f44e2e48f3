"""The dispatcher's metrics (``GET /metrics``) and readiness (``GET /ready``).

Deliveries are counted by outcome in plain ints (:class:`DeliveryMetrics`) and every attempt's
duration goes to a :class:`~disruptfeed._metrics.Buckets`; :class:`DispatcherCollector` reads them
at scrape time into a registry of the dispatcher's own. The lag is the dispatcher's group on the
alerts topic, measured in the background by its :class:`~disruptfeed._metrics.LagMonitor`.

``/health`` is liveness (200 whenever the process answers); ``/ready`` is 200 once the dispatcher
has loaded its state and subscriptions and is consuming, with its lag measured at most
``DISRUPTFEED_READY_MAX_LAG`` alerts; 503 with a JSON ``reason`` otherwise.
"""

from __future__ import annotations

__all__ = ["DeliveryMetrics", "DispatcherCollector", "dispatcher_collectors", "readiness"]

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, get_args

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from disruptfeed._metrics import Buckets, BuildInfoCollector, histogram, lag_families
from schemas._subscriptions import DeliveryOutcome, SubscriptionState

if TYPE_CHECKING:
    from consumers._dispatcher import Dispatcher


def _outcomes() -> dict[str, int]:
    return dict.fromkeys(get_args(DeliveryOutcome), 0)


@dataclass
class DeliveryMetrics:
    """Delivery outcomes and attempt durations since the dispatcher started."""

    outcomes: dict[str, int] = field(default_factory=_outcomes)
    """delivered / retrying (an attempt failed, another is scheduled) / dead-lettered / dropped."""
    latency: Buckets = field(default_factory=Buckets)
    """Seconds each delivery attempt took, answered or not."""

    def count(self, outcome: DeliveryOutcome) -> None:
        """Count one delivery outcome."""
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


def readiness(dispatcher: Dispatcher) -> tuple[bool, dict[str, Any]]:
    """Whether the dispatcher is ready, and the JSON /ready answers with."""
    monitor = dispatcher.lag
    bound = dispatcher.settings.ready_max_lag
    facts: dict[str, Any] = {"lag": monitor.total, "max_lag": bound}
    reason = None
    if not dispatcher.ready.is_set():
        reason = "starting: loading the delivery state and the subscriptions"
    elif monitor.measured_at is None:
        reason = "lag not measured yet"
    elif monitor.error is not None:
        reason = f"lag could not be measured: {monitor.error}"
    elif monitor.total > bound:
        reason = f"{monitor.total} alerts behind, more than {bound} (DISRUPTFEED_READY_MAX_LAG)"
    if reason is not None:
        return False, {"status": "not ready", "reason": reason, **facts}
    return True, {"status": "ready", **facts}


class DispatcherCollector(Collector):
    """The dispatcher's counters, histogram and gauges, read at scrape time."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher

    def describe(self) -> Iterator[Metric]:
        """The families (without samples): names and types for the registry."""
        yield from self._families(describe=True)

    def collect(self) -> Iterator[Metric]:
        """The families and their current values."""
        yield from self._families(describe=False)

    def _families(self, *, describe: bool) -> Iterator[Metric]:
        dispatcher = self.dispatcher
        stats = dispatcher.stats
        metrics = dispatcher.metrics

        def total(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, value=None if describe else value)

        yield total(
            "disruptfeed_dispatcher_alerts_read",
            "Alert records the dispatcher has read from the alerts topic.",
            stats.alerts_read,
        )
        yield total(
            "disruptfeed_dispatcher_invalid_alerts",
            "Alert records that could not be decoded (sent to the dead-letter topic).",
            stats.invalid_alerts,
        )
        yield total(
            "disruptfeed_dispatcher_matched",
            "Deliveries created: an alert matched a subscription's filter.",
            stats.matched,
        )
        deliveries = CounterMetricFamily(
            "disruptfeed_webhook_deliveries",
            "Webhook and Alertmanager deliveries by outcome: delivered; retrying (an attempt "
            "failed, another is scheduled); dead-lettered (attempts ran out, 410 Gone, or a "
            "disabled subscription); dropped (the subscription was deleted).",
            labels=["outcome"],
        )
        if not describe:
            for outcome, n in sorted(metrics.outcomes.items()):
                deliveries.add_metric([outcome], n)
        yield deliveries
        yield histogram(
            "disruptfeed_webhook_delivery_duration_seconds",
            "How long each delivery attempt took, from the endpoint check to the answer "
            "(or the timeout).",
            [],
            [] if describe else [([], metrics.latency)],
        )
        yield GaugeMetricFamily(
            "disruptfeed_webhook_pending_deliveries",
            "Deliveries not settled yet (queued, in flight or waiting for a retry).",
            value=None if describe else float(stats.pending),
        )
        subs = GaugeMetricFamily(
            "disruptfeed_subscriptions", "Subscriptions by state.", labels=["state"]
        )
        if not describe:
            by_state = dict.fromkeys(get_args(SubscriptionState), 0)
            for sub in dispatcher.registry.subscriptions.values():
                by_state[sub.state] = by_state.get(sub.state, 0) + 1
            for state, n in sorted(by_state.items()):
                subs.add_metric([state], n)
        yield subs
        yield GaugeMetricFamily(
            "disruptfeed_ready",
            "1 when /ready answers 200, else 0.",
            value=None if describe else (1.0 if readiness(dispatcher)[0] else 0.0),
        )
        yield from lag_families(dispatcher.lag)


def dispatcher_collectors(dispatcher: Dispatcher) -> list[Collector]:
    """Everything the dispatcher's /metrics exposes."""
    return [DispatcherCollector(dispatcher), BuildInfoCollector("dispatcher")]
