"""/metrics, /health and /ready against the real broker: a worker process and a dispatcher.

What is scraped must equal what happened: the events published per type, the bad records sent
per reason, the alerts the worker published per rule and state (read back from the alerts
topic), the deliveries a receiver saw per outcome; and the lag read from the cluster must come
down to 0. Every exposition is read with prometheus-client's own parser.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from consumers import read_alerts
from disruptfeed.settings import Settings
from producers import FeedProducer
from schemas import EventBase, codec
from schemas._subscriptions import AlertFilter
from tests.conftest import SettingsFactory
from tests.factories import T0, account, make_alert, network, report
from tests.integration.delivery import publish_alerts, receiver, running_dispatcher, wait_until
from tests.integration.helpers import serving
from tests.integration.worker import POLL_SECONDS, WorkerProcess

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
FAST_LAG = {"DISRUPTFEED_LAG_INTERVAL_SECONDS": "0.5", "DISRUPTFEED_READY_MAX_LAG": "0"}


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def series(samples: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def by(samples: Samples, name: str, label: str) -> dict[str, float]:
    return {dict(labels)[label]: v for labels, v in series(samples, name).items()}


def scrape(worker: WorkerProcess) -> Samples:
    request = urllib.request.Request(
        f"http://127.0.0.1:{worker.port}/metrics",
        headers={"Authorization": f"Bearer {worker.token}"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        return parse(response.read().decode())


def _events() -> list[EventBase]:
    events: list[EventBase] = []
    for i in range(90):
        events.append(account(("RU", "CN", "IR", "NG", "KP")[i % 5], minutes=i))
    for i in range(12):
        events.append(network(("CN", "RU", "IR")[i % 3], occurred_at=T0 + dt.timedelta(hours=i)))
    for _ in range(4):
        events.append(report())
    return events


async def _publish_bad(settings: Settings) -> dict[str, int]:
    """Records the worker must dead-letter; returns how many per reason code."""
    future = account("RU", occurred_at=dt.datetime(9999, 1, 1, tzinfo=dt.UTC))
    bad = [
        ("account-disrupted", b"{truncated", "decode"),
        ("network-identified", b"\xff\xfe not json", "decode"),
        ("account-disrupted", codec.encode(report()), "schema"),  # a valid event, wrong topic
        ("account-disrupted", codec.encode(future), "future-event-time"),
    ]
    raw = AIOKafkaProducer(**settings.client_kwargs())
    await raw.start()
    try:
        for name, value, _ in bad:
            await raw.send_and_wait(settings.topic(name), value, key=b"RU")
    finally:
        await raw.stop()
    return dict(Counter(reason for _, _, reason in bad))


async def test_a_worker_counts_what_was_published_and_reports_it(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = await make_settings()
    events = _events()
    async with FeedProducer(settings) as producer:
        outcomes = await producer.publish_many(events)
    assert all(o.ok and not o.duplicate for o in outcomes)
    bad = await _publish_bad(settings)
    published = Counter(e.type for e in events)
    records = len(events) + sum(bad.values())

    worker = WorkerProcess(settings, tmp_path / "worker", env=FAST_LAG)
    worker.start()
    try:
        # Ready (bound 0: every record handled and committed) only once the lag, read from the
        # cluster, is 0 on every source partition.
        worker.wait_for(lambda: worker.status("/ready", None) == 200, "/ready 200")
        ready = worker.get("/ready")
        assert (ready["status"], ready["lag"], ready["recovered"]) == ("ready", 0, True)
        assert len(ready["partitions"]) == 3 * settings.partitions
        assert worker.status("/metrics", None) == 401
        assert worker.status("/metrics", "not-the-token") == 401

        samples = scrape(worker)
        counted = by(samples, "disruptfeed_events_counted_total", "type")
        assert counted == {t: float(n) for t, n in published.items()}
        dead = {r: v for r, v in by(samples, "disruptfeed_events_dead_lettered_total",
                                    "reason").items() if v}  # fmt: skip
        assert dead == bad
        assert samples[("disruptfeed_events_processed_total", ())] == records
        assert samples[("disruptfeed_events_duplicate_total", ())] == 0
        lag = series(samples, "disruptfeed_consumer_lag")
        assert len(lag) == 3 * settings.partitions
        assert set(lag.values()) == {0.0}
        assert {dict(labels)["group"] for labels in lag} == {f"{settings.topic_prefix}-worker"}
        assert samples[("disruptfeed_ready", ())] == 1
        latency = samples[("disruptfeed_processing_latency_seconds_count", ())]
        assert latency == records  # one sample per record handled
        [build] = series(samples, "disruptfeed_build_info")
        assert dict(build)["component"] == "worker"
        assert 0 < samples[("disruptfeed_table_restore_seconds", ())] < 120

        history = read_alerts(settings, start="earliest", until_end=True)
        alerts = Counter([(a.rule, a.status) async for a in history])
        assert alerts, "the default rules raise alerts on new state-linked networks"
        sent = {
            (dict(labels)["rule"], dict(labels)["state"]): v
            for labels, v in series(samples, "disruptfeed_alerts_total").items()
            if v
        }
        assert sent == {key: float(n) for key, n in alerts.items()}

        # /health is liveness, answered to anyone.
        assert worker.status("/health", None) == 200
    finally:
        worker.stop()

    # Restarted on the same state: the counts come back from the tables, and the restore is timed.
    worker.start()
    try:
        worker.wait_for(lambda: worker.status("/ready", None) == 200, "/ready 200 again")
        samples = scrape(worker)
        assert samples[("disruptfeed_table_restored_events", ())] == len(events)
        assert 0 < samples[("disruptfeed_table_restore_seconds", ())] < 120
        # Nothing was read again: the group had committed every record before the stop.
        assert samples[("disruptfeed_events_processed_total", ())] == 0
        assert set(series(samples, "disruptfeed_consumer_lag").values()) == {0.0}
    finally:
        worker.stop()


async def _failing(request: web.Request, n: int) -> web.StreamResponse:
    return web.Response(status=500)


async def test_the_dispatcher_counts_deliveries_by_outcome(make_settings: SettingsFactory) -> None:
    settings = await make_settings(
        api_token="metrics-token",
        webhook_allow_private=True,
        webhook_retry_schedule="0,0.1,0.1",  # three attempts, then dead-lettered
        webhook_timeout=2,
        lag_interval_seconds=0.3,
        ready_max_lag=0,
    )
    auth = {"Authorization": "Bearer metrics-token"}
    alerts = [make_alert("RU", n=n) for n in range(3)]
    async with (
        receiver() as good,
        receiver(_failing) as bad,
        running_dispatcher(settings) as dispatcher,
        serving(settings, dispatcher, shutdown_timeout=1) as http,
    ):
        assert dispatcher.admin is not None
        everything = AlertFilter()
        await dispatcher.admin.create(good.url, filter=everything)
        await dispatcher.admin.create(bad.url, filter=everything)
        await publish_alerts(settings, alerts)

        async def outcomes() -> dict[str, float]:
            response = await http.get("/metrics", headers=auth)
            assert response.status_code == 200
            return by(parse(response.text), "disruptfeed_webhook_deliveries_total", "outcome")

        deadline = time.monotonic() + 60
        expected = {"delivered": 3.0, "retrying": 6.0, "dead-lettered": 3.0, "dropped": 0.0}
        while (got := await outcomes()) != expected:
            assert time.monotonic() < deadline, f"deliveries by outcome: {got}"
            await asyncio.sleep(POLL_SECONDS)  # the poll interval of this wait-for-condition
        assert len(good.requests) == 3
        assert len(bad.requests) == 9

        # The lag of the dispatcher's group on the alerts topic, from the cluster, reaches 0.
        await wait_until(
            lambda: dispatcher.lag.measured_at is not None and dispatcher.lag.total == 0,
            "the dispatcher's lag measured at 0",
        )
        ready = await http.get("/ready")
        assert ready.status_code == 200, ready.text
        assert (await http.get("/health")).status_code == 200
        assert (await http.get("/metrics")).status_code == 401
        samples = parse((await http.get("/metrics", headers=auth)).text)
        hist = "disruptfeed_webhook_delivery_duration_seconds"
        assert samples[(f"{hist}_count", ())] == 12  # every attempt: 3 + 3 x 3
        assert samples[(f"{hist}_bucket", (("le", "+Inf"),))] == 12
        assert samples[("disruptfeed_dispatcher_alerts_read_total", ())] == 3
        assert samples[("disruptfeed_dispatcher_matched_total", ())] == 6
        assert samples[("disruptfeed_webhook_pending_deliveries", ())] == 0
        assert by(samples, "disruptfeed_subscriptions", "state")["active"] == 2
        lag = series(samples, "disruptfeed_consumer_lag")
        assert len(lag) == settings.partitions
        assert set(lag.values()) == {0.0}
        assert {dict(labels)["group"] for labels in lag} == {f"{settings.topic_prefix}-dispatcher"}
        [build] = series(samples, "disruptfeed_build_info")
        assert dict(build)["component"] == "dispatcher"
