"""Prometheus metrics shared by the worker and the dispatcher: registry, histograms, lag, build.

Each app has its own :class:`~prometheus_client.CollectorRegistry` (never the global one), whose
collectors read plain counters at scrape time: the worker counts ~8,000 events a second, and an
``int += 1`` in its :class:`~streams._processor.Stats` costs a fraction of a prometheus ``Counter``
(a lock and a float per call). Histograms are :class:`Buckets`: one ``bisect`` and two additions.

Consumer lag (end offset minus the group's committed offset, per partition) is read from the
cluster by a :class:`LagMonitor` in the background, every ``DISRUPTFEED_LAG_INTERVAL_SECONDS``
and within ``DISRUPTFEED_LAG_TIMEOUT_SECONDS``; a scrape or a readiness probe reads the last
measurement and never waits for the cluster.
"""

from __future__ import annotations

__all__ = [
    "LATENCY_BUCKETS",
    "Buckets",
    "BuildInfoCollector",
    "LagMonitor",
    "exported_names",
    "histogram",
    "lag_families",
    "metrics_body",
    "new_registry",
]

import asyncio
import bisect
import contextlib
import logging
import platform
import time
from collections.abc import Callable, Iterable, Iterator
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString as _untyped_go_float

from disruptfeed import __version__
from disruptfeed.settings import Settings

log = logging.getLogger(__name__)

LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                          60.0, 300.0, 900.0, 3600.0)  # fmt: skip
"""Upper bounds (seconds) of the latency histograms: milliseconds live, up to an hour behind."""


class Buckets:
    """A histogram kept as plain numbers: :meth:`observe` is one bisect and two additions."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Iterable[float] = LATENCY_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        """Count one value (in the first bucket whose upper bound is at least ``value``)."""
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def copy(self) -> Buckets:
        """An independent copy."""
        other = Buckets(self.bounds)
        other.counts = list(self.counts)
        other.total = self.total
        return other

    @property
    def count(self) -> int:
        """How many values were observed."""
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, float]]:
        """Prometheus's buckets: ``(le, values <= le)``, ending with ``+Inf``."""
        running = 0
        out = []
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            out.append((_go_float(bound), float(running)))
        return out


def _go_float(value: float) -> str:
    """A bucket bound as Prometheus writes it (``0.005``, ``1.0``, ``+Inf``)."""
    return str(_untyped_go_float(value))  # type: ignore[no-untyped-call]


def histogram(
    name: str, documentation: str, labels: list[str], series: Iterable[tuple[list[str], Buckets]]
) -> HistogramMetricFamily:
    """A histogram family of :class:`Buckets`, one series per label values."""
    family = HistogramMetricFamily(name, documentation, labels=labels)
    for values, buckets in series:
        family.add_metric(values, buckets.cumulative(), buckets.total)
    return family


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:  # pragma: no cover - the lock installs both
        return "unknown"


class BuildInfoCollector(Collector):
    """``disruptfeed_build_info``: 1, labelled with the versions this process runs."""

    def __init__(self, component: str) -> None:
        self.labels = {
            "component": component,
            "version": __version__,
            "python": platform.python_version(),
            "faust": _version("faust-streaming"),
            "aiokafka": _version("aiokafka"),
        }

    def collect(self) -> Iterator[Metric]:
        """The one series."""
        family = GaugeMetricFamily(
            "disruptfeed_build_info",
            "Versions of Disruption Feed, Python, Faust and aiokafka this process runs (always 1).",
            labels=list(self.labels),
        )
        family.add_metric(list(self.labels.values()), 1.0)
        yield family

    def describe(self) -> Iterator[Metric]:
        """Same as :meth:`collect` (it costs nothing)."""
        return self.collect()


class LagMonitor:
    """A consumer group's lag on some partitions, measured in the background.

    Lag is the partition's end offset minus the group's committed offset (minus the log start
    offset when the group has committed nothing there yet), read from the cluster with a client
    of its own, never from the consumer being measured.

    Args:
        settings: the cluster connection.
        group_id: the consumer group whose commits are read.
        partitions: ``(topic, partition)`` pairs to measure, asked before each measurement
            (a worker's assignment changes with rebalances).
        isolation_level: the measured consumer's, so that end offsets mean the same to both.
    """

    def __init__(
        self,
        settings: Settings,
        group_id: str,
        partitions: Callable[[], Iterable[tuple[str, int]]],
        *,
        isolation_level: str = "read_committed",
    ) -> None:
        self.settings = settings
        self.group_id = group_id
        self.interval = settings.lag_interval_seconds
        self.timeout = settings.lag_timeout_seconds
        self._partitions = partitions
        self._isolation = isolation_level
        self.lags: dict[tuple[str, int], int] = {}
        """``(topic, partition)`` -> records behind, as last measured."""
        self.measured_at: float | None = None
        """Unix time of the last successful measurement."""
        self.error: str | None = None
        """Why the last measurement failed; None when it succeeded."""
        self.failures = 0
        self._admin: Any = None
        self._consumer: Any = None

    @property
    def total(self) -> int:
        """Records behind, summed over the measured partitions."""
        return sum(self.lags.values())

    async def run(self) -> None:
        """Measure every ``interval`` seconds until cancelled, then close the clients."""
        try:
            while True:
                await self.refresh()
                await asyncio.sleep(self.interval)  # the measuring period, not a wait for state
        finally:
            await self.close()

    async def refresh(self) -> None:
        """Measure once (within ``timeout``); a failure is kept in :attr:`error`, not raised."""
        try:
            self.lags = await asyncio.wait_for(self._measure(), self.timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.failures += 1
            self.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            log.warning("could not measure the lag of group %s: %s", self.group_id, self.error)
            await self.close()  # connect afresh next time
            return
        self.measured_at = time.time()
        self.error = None

    async def _measure(self) -> dict[tuple[str, int], int]:
        from aiokafka import TopicPartition

        wanted = sorted(set(self._partitions()))
        if not wanted:
            return {}
        admin, consumer = await self._clients()
        tps = [TopicPartition(topic, partition) for topic, partition in wanted]
        committed = await admin.list_consumer_group_offsets(self.group_id, partitions=tps)
        ends = await consumer.end_offsets(tps)
        missing = [tp for tp in tps if getattr(committed.get(tp), "offset", -1) < 0]
        starts = await consumer.beginning_offsets(missing) if missing else {}
        lags = {}
        for tp in tps:
            done = committed.get(tp)
            position = done.offset if done is not None and done.offset >= 0 else starts[tp]
            lags[(tp.topic, tp.partition)] = max(0, int(ends[tp]) - int(position))
        return lags

    async def _clients(self) -> tuple[Any, Any]:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.admin import AIOKafkaAdminClient

        from disruptfeed._aiokafka import start_admin_client, start_consumer_client

        if self._admin is None:
            admin = AIOKafkaAdminClient(**self.settings.client_kwargs())
            await start_admin_client(admin)  # closes it again on failure
            self._admin = admin
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                **self.settings.client_kwargs(),
                enable_auto_commit=False,
                isolation_level=self._isolation,
            )
            await start_consumer_client(consumer)  # stops it again on failure
            self._consumer = consumer
        return self._admin, self._consumer

    async def close(self) -> None:
        """Close the clients (they are opened again by the next measurement)."""
        from disruptfeed._aiokafka import stop_client

        admin, consumer = self._admin, self._consumer
        self._admin = self._consumer = None
        if consumer is not None:
            with contextlib.suppress(Exception):
                await stop_client(consumer)
        if admin is not None:
            with contextlib.suppress(Exception):
                await admin.close()


def lag_families(monitor: LagMonitor) -> Iterator[Metric]:
    """The lag gauges of one monitor, from its last measurement."""
    lag = GaugeMetricFamily(
        "disruptfeed_consumer_lag",
        "Records behind: the partition's end offset minus the group's committed offset "
        "(measured every DISRUPTFEED_LAG_INTERVAL_SECONDS).",
        labels=["group", "topic", "partition"],
    )
    for (topic, partition), behind in sorted(monitor.lags.items()):
        lag.add_metric([monitor.group_id, topic, str(partition)], float(behind))
    yield lag
    measured = GaugeMetricFamily(
        "disruptfeed_consumer_lag_measured_timestamp_seconds",
        "Unix time of the last successful lag measurement (0: none yet).",
        labels=["group"],
    )
    measured.add_metric([monitor.group_id], monitor.measured_at or 0.0)
    yield measured


def metrics_body(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The text exposition of ``registry`` and its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


def new_registry(collectors: Iterable[Collector]) -> CollectorRegistry:
    """A registry of its own (not prometheus_client's global one) holding ``collectors``."""
    registry = CollectorRegistry(auto_describe=True)
    for collector in collectors:
        registry.register(collector)
    return registry


def exported_names(collectors: Iterable[Collector]) -> set[str]:
    """Every sample name ``collectors`` can expose (``_total``, ``_bucket``, ... included)."""
    suffixes = {  # our families carry no _created samples
        "counter": ("_total",),
        "histogram": ("_bucket", "_count", "_sum"),
        "gauge": ("",),
    }
    names: set[str] = set()
    for collector in collectors:
        describe = getattr(collector, "describe", None)
        families = describe() if describe is not None else collector.collect()
        for family in families:
            names.update(family.name + suffix for suffix in suffixes[family.type])
    return names
