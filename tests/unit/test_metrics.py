"""/metrics, /health and /ready of the worker and the dispatcher, without a broker.

Scrapes go through the real aiohttp applications (the worker's is the one Faust builds for
:func:`streams.app.create_app`), and every exposition is read back with prometheus-client's own
text parser, so what is checked is what Prometheus would store.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from faust.web.drivers.aiohttp import Web as AiohttpWeb
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from consumers._api import build_app
from consumers._dispatcher import Dispatcher
from disruptfeed._metrics import Buckets, LagMonitor, exported_names, metrics_body
from disruptfeed.settings import Settings
from schemas import codec
from streams._batch import Sinks, count_batch
from streams._processor import Stats
from streams.app import WorkerState, create_app, worker_state
from tests.factories import T0, account, network, report

pytestmark = pytest.mark.unit

TOKEN = "metrics-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _settings(tmp_path: Path, **overrides: Any) -> Settings:
    fields: dict[str, Any] = {
        "data_dir": tmp_path,
        "worker_store": "memory://",
        "bootstrap_servers": "127.0.0.1:9",  # never contacted: nothing is started
        "api_token": SecretStr(TOKEN),
        "topic_prefix": "t",
    }
    fields.update(overrides)
    return Settings(**fields)


def parse(text: str) -> tuple[dict[str, str], Samples]:
    """Family name -> type, and (sample name, sorted labels) -> value, via prometheus-client."""
    types: dict[str, str] = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in samples, f"repeated series {key}"
            samples[key] = sample.value
    return types, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


class _Ack:
    def __await__(self) -> Any:
        return iter(())  # an acknowledged send


class _Sink:
    def __init__(self) -> None:
        self.sent: list[dict[str, bytes]] = []

    async def send(self, *, key: Any, value: Any, headers: Any) -> _Ack:
        self.sent.append(dict(headers))
        return _Ack()


class _Record:
    def __init__(self, topic: str, offset: int, value: bytes, key: bytes, stamp: float) -> None:
        self.message = type("Message", (), {
            "topic": topic, "partition": 0, "offset": offset, "key": key, "value": value,
            "headers": [], "timestamp": stamp,
        })  # fmt: skip


def _worker(settings: Settings) -> tuple[WorkerState, web.Application]:
    app = create_app(settings)
    app.finalize()
    driver = app.web
    assert isinstance(driver, AiohttpWeb)
    driver.init_server()
    return worker_state(app), driver.web_app


@pytest.fixture
async def worker(tmp_path: Path) -> AsyncIterator[tuple[WorkerState, TestClient[Any, Any]]]:
    state, web_app = _worker(_settings(tmp_path))
    async with TestClient(TestServer(web_app)) as client:
        yield state, client


async def _feed(state: WorkerState) -> None:
    """Two batches: 3 account, 1 network, 1 report counted; 1 duplicate, 1 late; 3 bad."""
    topics = {name.rsplit(".", 1)[1]: name for name in state.processor.topic_types}
    now = time.time()
    first = account("RU", minutes=600)
    good = [
        ("account-disrupted", first),
        ("account-disrupted", account("RU", minutes=601)),
        ("account-disrupted", account("RU", minutes=0)),  # 10 h behind: late
        ("network-identified", network("CN")),
        ("report-released", report()),
        ("account-disrupted", first),  # the same id again: a duplicate
    ]
    offsets: dict[str, int] = {}

    def offset(topic: str) -> int:  # Kafka's: consecutive within each partition
        offsets[topic] = offsets.get(topic, -1) + 1
        return offsets[topic]

    batch = [
        _Record(topics[t], offset(t), codec.encode(e), e.region.encode(), now - 2) for t, e in good
    ]
    wrong = account("UA", minutes=602)
    future = account("RU", minutes=10 * 24 * 60)  # days ahead of its publish time
    ad, ni = topics["account-disrupted"], topics["network-identified"]
    bad = [
        _Record(ad, offset("account-disrupted"), b"{", b"RU", now - 2),  # not JSON
        _Record(ni, offset("network-identified"), codec.encode(wrong), b"UA", now - 2),
        _Record(ad, offset("account-disrupted"), codec.encode(future), b"RU", T0.timestamp()),
    ]
    sinks = Sinks({}, {}, _Sink(), _Sink())
    await count_batch(state, sinks, batch)
    await count_batch(state, sinks, bad)


async def test_worker_metrics_count_what_the_worker_did(
    worker: tuple[WorkerState, TestClient[Any, Any]],
) -> None:
    state, client = worker
    state.recovered = True
    await _feed(state)
    response = await client.get("/metrics", headers=AUTH)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    types, samples = parse(await response.text())

    assert types["disruptfeed_events_counted"] == "counter"
    counted = {t: value(samples, "disruptfeed_events_counted_total", type=t)
               for t in ("account.disrupted", "network.identified", "report.released")}  # fmt: skip
    assert counted == {"account.disrupted": 3, "network.identified": 1, "report.released": 1}
    assert value(samples, "disruptfeed_events_processed_total") == 9
    assert value(samples, "disruptfeed_events_duplicate_total") == 1
    assert value(samples, "disruptfeed_events_late_total", type="account.disrupted") == 1
    assert value(samples, "disruptfeed_events_late_total", type="report.released") == 0
    dead = {
        labels[0][1]: v
        for (name, labels), v in samples.items()
        if name == "disruptfeed_events_dead_lettered_total"
    }
    assert {k: v for k, v in dead.items() if v} == {
        "decode": 1,
        "schema": 1,
        "future-event-time": 1,
    }
    assert set(dead) >= {"beyond-dedupe-horizon", "internal", "handling-failed"}  # listed at 0

    # The default rules: a new state-linked network fires at once; a report is informational.
    assert value(samples, "disruptfeed_alerts_total", rule="new-state-network", state="firing") == 1
    assert value(samples, "disruptfeed_alerts_total", rule="burst-accounts", state="resolved") == 0
    firing = sum(v for (n, _), v in samples.items() if n == "disruptfeed_alerts_firing")
    assert firing == len(state.processor.engine.active())

    # Latency: every record of both batches, one sample each; all but the future one ~2 s.
    assert types["disruptfeed_processing_latency_seconds"] == "histogram"
    assert value(samples, "disruptfeed_processing_latency_seconds_count") == 9
    assert value(samples, "disruptfeed_processing_latency_seconds_bucket", le="1.0") == 0
    assert value(samples, "disruptfeed_processing_latency_seconds_bucket", le="2.5") == 8
    assert value(samples, "disruptfeed_processing_latency_seconds_bucket", le="+Inf") == 9

    build = [labels for (n, labels), _ in samples.items() if n == "disruptfeed_build_info"]
    assert len(build) == 1
    info = dict(build[0])
    assert info["component"] == "worker"
    assert info["version"]
    assert info["python"].count(".") == 2
    assert info["faust"].startswith("0.")
    assert info["aiokafka"].startswith("0.")
    assert value(samples, "disruptfeed_ready") == 0  # no partitions assigned here


async def test_metrics_need_the_token_and_probes_do_not(
    worker: tuple[WorkerState, TestClient[Any, Any]],
) -> None:
    state, client = worker
    assert (await client.get("/metrics")).status == 401
    assert (await client.get("/metrics", headers={"Authorization": "Bearer nope"})).status == 401
    # /health is liveness: 200 even while the tables are restored.
    state.recovered = False
    health = await client.get("/health")
    assert health.status == 200
    assert (await health.json())["status"] == "recovering"
    ready = await client.get("/ready")
    assert ready.status == 503
    assert (await ready.json())["reason"].startswith("recovering")


def _measured(monitor: LagMonitor, lags: dict[tuple[str, int], int]) -> None:
    monitor.lags = lags
    monitor.measured_at = time.time()
    monitor.error = None


async def test_worker_ready_needs_partitions_recovery_and_lag_under_the_bound(
    tmp_path: Path,
) -> None:
    state, web_app = _worker(_settings(tmp_path, ready_max_lag=100))
    parts = {("t.account-disrupted", 0), ("t.report-released", 0)}
    async with TestClient(TestServer(web_app)) as client:

        async def ready() -> tuple[int, dict[str, Any]]:
            response = await client.get("/ready")
            return response.status, await response.json()

        state.recovered = True
        status, body = await ready()
        assert (status, body["reason"][:30]) == (503, "no source partitions assigned ")
        state.source_partitions = lambda: parts
        status, body = await ready()
        assert (status, body["reason"]) == (503, "lag not measured yet")
        assert state.lag is not None
        _measured(state.lag, {("t.account-disrupted", 0): 1})
        status, body = await ready()
        assert body["reason"] == "lag not measured yet for the partitions just assigned"
        _measured(state.lag, {("t.account-disrupted", 0): 60, ("t.report-released", 0): 41})
        status, body = await ready()
        assert status == 503
        assert "101 records behind, more than 100 (DISRUPTFEED_READY_MAX_LAG)" in body["reason"]
        _measured(state.lag, {("t.account-disrupted", 0): 60, ("t.report-released", 0): 40})
        status, body = await ready()
        assert (status, body["status"], body["lag"]) == (200, "ready", 100)
        assert body["partitions"] == ["t.account-disrupted:0", "t.report-released:0"]
        state.lag.error = "KafkaTimeoutError"
        status, body = await ready()
        assert (status, body["reason"]) == (503, "lag could not be measured: KafkaTimeoutError")
        state.lag.error = None
        state.recovered = False  # a rebalance
        assert (await ready())[0] == 503

        _, samples = parse(await (await client.get("/metrics", headers=AUTH)).text())
        group = state.lag.group_id
        assert group == "t-worker"
        lag = value(samples, "disruptfeed_consumer_lag", group=group, topic="t.report-released",
                    partition="0")  # fmt: skip
        assert lag == 40
        stamp = value(samples, "disruptfeed_consumer_lag_measured_timestamp_seconds", group=group)
        assert stamp == pytest.approx(state.lag.measured_at)


async def test_a_lag_measurement_that_fails_is_reported_not_raised(tmp_path: Path) -> None:
    settings = _settings(tmp_path, lag_timeout_seconds=3, request_timeout_ms=1_000)
    monitor = LagMonitor(settings, "g", lambda: [("t.x", 0)])
    await monitor.refresh()  # nothing listens on 127.0.0.1:9
    assert monitor.measured_at is None
    assert monitor.error
    assert monitor.failures == 1
    await monitor.close()
    empty = LagMonitor(settings, "g", list)  # nothing assigned: nothing to ask the cluster
    await empty.refresh()
    assert (empty.error, empty.lags, empty.total) == (None, {}, 0)


def test_buckets_expose_what_prometheus_clients_histogram_does() -> None:
    values = [0.0, 0.004, 0.005, 0.0051, 0.3, 1.0, 7.5, 59.9, 4_000.0, 0.02]
    ours = Buckets()
    registry = CollectorRegistry()
    theirs = Histogram("h_seconds", "h", buckets=ours.bounds, registry=registry)
    for v in values:
        ours.observe(v)
        theirs.observe(v)
    _, expected = parse(metrics_body(registry)[0].decode())
    assert ours.count == len(values)
    assert ours.total == pytest.approx(expected[("h_seconds_sum", ())])
    for le, count in ours.cumulative():
        assert count == expected[("h_seconds_bucket", (("le", le),))], le


def test_stats_copy_is_independent_and_totals_are_the_plain_counts() -> None:
    stats = Stats(counted=1, counted_by_type={"a": 1}, alerts_by_rule={("r", "firing"): 1})
    copy = stats.copy()
    stats.counted_by_type["a"] += 1
    stats.dead_letter("decode")
    assert copy.counted_by_type == {"a": 1}
    assert copy.dead_lettered_by_reason == {}
    assert stats.totals() == {"processed": 0, "counted": 1, "duplicates": 0, "dead_lettered": 1,
                              "late": 0, "alerts_sent": 0}  # fmt: skip


async def test_dispatcher_metrics_health_and_ready(tmp_path: Path) -> None:
    settings = _settings(tmp_path, ready_max_lag=5)
    dispatcher = Dispatcher(settings)
    for outcome in ("delivered", "delivered", "retrying", "dead-lettered"):
        dispatcher.metrics.count(outcome)
    dispatcher.metrics.latency.observe(0.02)
    dispatcher.metrics.latency.observe(12.0)
    async with TestClient(TestServer(build_app(settings, dispatcher))) as client:
        assert (await client.get("/metrics")).status == 401
        response = await client.get("/metrics", headers=AUTH)
        types, samples = parse(await response.text())
        outcomes = {
            dict(labels)["outcome"]: v
            for (name, labels), v in samples.items()
            if name == "disruptfeed_webhook_deliveries_total"
        }
        assert outcomes == {"delivered": 2, "retrying": 1, "dead-lettered": 1, "dropped": 0}
        assert types["disruptfeed_webhook_delivery_duration_seconds"] == "histogram"
        hist = "disruptfeed_webhook_delivery_duration_seconds"
        assert value(samples, f"{hist}_count") == 2
        assert value(samples, f"{hist}_bucket", le="0.025") == 1
        assert value(samples, f"{hist}_bucket", le="10.0") == 1
        assert value(samples, f"{hist}_bucket", le="30.0") == 2
        assert value(samples, "disruptfeed_subscriptions", state="active") == 0
        [build] = [dict(lb) for (n, lb), _ in samples.items() if n == "disruptfeed_build_info"]
        assert build["component"] == "dispatcher"

        health = await client.get("/health")
        assert (health.status, (await health.json())["status"]) == (200, "starting")
        ready = await client.get("/ready")
        assert (ready.status, (await ready.json())["reason"][:8]) == (503, "starting")
        dispatcher.ready.set()
        assert (await (await client.get("/ready")).json())["reason"] == "lag not measured yet"
        _measured(dispatcher.lag, {("t.alerts", 0): 6})
        ready = await client.get("/ready")
        assert ready.status == 503
        assert "6 alerts behind" in (await ready.json())["reason"]
        _measured(dispatcher.lag, {("t.alerts", 0): 5})
        assert (await client.get("/ready")).status == 200
        assert (await client.get("/health")).status == 200
        _, samples = parse(await (await client.get("/metrics", headers=AUTH)).text())
        assert value(samples, "disruptfeed_ready") == 1
        group = "t-dispatcher"
        assert value(samples, "disruptfeed_consumer_lag", group=group, topic="t.alerts",
                     partition="0") == 5  # fmt: skip


def test_every_family_follows_the_naming_conventions(tmp_path: Path) -> None:
    from consumers._metrics import dispatcher_collectors
    from streams._metrics import worker_collectors

    state, _ = _worker(_settings(tmp_path))
    names = exported_names(worker_collectors(state)) | exported_names(
        dispatcher_collectors(Dispatcher(_settings(tmp_path)))
    )
    assert names
    for name in names:
        assert name.startswith("disruptfeed_"), name
        assert name == name.lower(), name
    counters = {n for n in names if n.endswith("_total")}
    assert "disruptfeed_events_counted_total" in counters
    assert "disruptfeed_webhook_deliveries_total" in counters
