"""``disruptfeed bench --quick`` against the session broker: the result document's shape.

Figures depend on the machine, so nothing here asserts a speed: only that every case is there,
that what was measured is a positive number, and that the ratios follow from the medians.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CASES = {
    "kafka-producer": "events/s",
    "aiokafka-producer": "events/s",
    "confluent-producer": "events/s",
    "feed-producer": "events/s",
    "kafka-consumer": "events/s",
    "aiokafka-consumer": "events/s",
    "confluent-consumer": "events/s",
    "feed-pipeline": "events/s",
    "quix-pipeline": "events/s",
    "faust-floor": "events/s",
    "feed-processor": "events/s",
    "publish-to-alert-p50": "ms",
    "publish-to-alert-p99": "ms",
    "publish-to-webhook-p50": "ms",
    "publish-to-webhook-p99": "ms",
    "feed-replay-verify": "events/s",
    "worker-peak-rss": "MB",
    "worker-restore": "s",
}
PRODUCERS = ["kafka-producer", "aiokafka-producer", "confluent-producer", "feed-producer"]
CONSUMERS = [
    "kafka-consumer",
    "aiokafka-consumer",
    "confluent-consumer",
    "feed-pipeline",
    "quix-pipeline",
    "faust-floor",
    "feed-processor",
    "feed-replay-verify",
]
LATENCIES = [
    "publish-to-alert-p50",
    "publish-to-alert-p99",
    "publish-to-webhook-p50",
    "publish-to-webhook-p99",
]
# The whole quick run is under three minutes on two cores; this is a deadline, not a wait.
BENCH_DEADLINE_S = 540


class BenchRun:
    def __init__(self, document: dict[str, Any], stdout: str) -> None:
        self.document = document
        self.stdout = stdout
        self.cases: dict[str, dict[str, Any]] = {c["name"]: c for c in document["cases"]}


@pytest.fixture(scope="module")
def bench(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> BenchRun:
    out: Path = tmp_path_factory.mktemp("bench") / "bench.json"
    env = {**os.environ, "DISRUPTFEED_BOOTSTRAP_SERVERS": kafka_bootstrap}
    done = subprocess.run(
        [sys.executable, "-m", "disruptfeed", "bench", "--quick", "--yes", "--json", str(out)],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=BENCH_DEADLINE_S,
        check=False,
    )
    assert done.returncode == 0, f"exit {done.returncode}:\n{done.stderr[-4000:]}"
    return BenchRun(json.loads(out.read_text(encoding="utf-8")), done.stdout)


@pytest.mark.timeout(BENCH_DEADLINE_S + 60)
def test_every_case_is_reported_once_with_its_unit(bench: BenchRun) -> None:
    names = [c["name"] for c in bench.document["cases"]]
    assert sorted(names) == sorted(CASES)
    for name, unit in CASES.items():
        case = bench.cases[name]
        assert case["unit"] == unit, name
        assert {"name", "unit", "median", "min", "max", "runs"} <= case.keys(), name


@pytest.mark.timeout(BENCH_DEADLINE_S + 60)
def test_measured_figures_are_positive_and_ordered(bench: BenchRun) -> None:
    for name in CASES:
        case = bench.cases[name]
        assert "error" not in case, f"{name}: {case.get('error')}"
        assert case["runs"] >= 1, name
        assert case["runs"] == len(case["values"]), name
        assert all(v > 0 for v in case["values"]), name
        assert 0 < case["min"] <= case["median"] <= case["max"], name


@pytest.mark.timeout(BENCH_DEADLINE_S + 60)
def test_ratios_are_the_medians_divided_by_the_peers(bench: BenchRun) -> None:
    def check(names: list[str], aiokafka: str, kafka: str) -> None:
        for name in names:
            case = bench.cases[name]
            for key, peer in (("ratio_to_aiokafka", aiokafka), ("ratio_to_kafka", kafka)):
                expected = case["median"] / bench.cases[peer]["median"]
                # Four significant digits in the document.
                assert case[key] == pytest.approx(expected, rel=1e-3), (name, key)
        assert bench.cases[aiokafka]["ratio_to_aiokafka"] == 1.0
        assert bench.cases[kafka]["ratio_to_kafka"] == 1.0

    check(PRODUCERS, "aiokafka-producer", "kafka-producer")
    check(CONSUMERS, "aiokafka-consumer", "kafka-consumer")
    for name in (*LATENCIES, "worker-peak-rss", "worker-restore"):
        assert "ratio_to_aiokafka" not in bench.cases[name]
        assert "ratio_to_kafka" not in bench.cases[name]


@pytest.mark.timeout(BENCH_DEADLINE_S + 60)
def test_worst_ratio_is_the_lowest_against_another_case(bench: BenchRun) -> None:
    keys = ("ratio_to_aiokafka", "ratio_to_kafka")
    ratios = [
        (bench.cases[name][key], name, peer)
        for names, peers in (
            (PRODUCERS, ("aiokafka-producer", "kafka-producer")),
            (CONSUMERS, ("aiokafka-consumer", "kafka-consumer")),
        )
        for name in names
        for key, peer in zip(keys, peers, strict=True)
        if name != peer
    ]
    ratio, name, peer = min(ratios)
    assert bench.document["worst_ratio"] == {"ratio": ratio, "case": name, "peer": peer}


@pytest.mark.timeout(BENCH_DEADLINE_S + 60)
@pytest.mark.parametrize("case", ["publish-to-alert", "publish-to-webhook"])
def test_p99_is_not_below_p50(bench: BenchRun, case: str) -> None:
    p50 = bench.cases[f"{case}-p50"]["values"]
    p99 = bench.cases[f"{case}-p99"]["values"]
    assert len(p50) == len(p99)
    assert all(high >= low for low, high in zip(p50, p99, strict=True))


@pytest.mark.timeout(BENCH_DEADLINE_S + 60)
def test_every_alert_of_the_stream_came_as_a_webhook_too(bench: BenchRun) -> None:
    # The same stream is timed to the topic and, through a dispatcher, to a webhook receiver.
    alerts = bench.cases["publish-to-alert-p50"]["detail"]["runs"]
    hooks = bench.cases["publish-to-webhook-p50"]["detail"]["runs"]
    assert len(alerts) == len(hooks) >= 1
    for alert, hook in zip(alerts, hooks, strict=True):
        assert hook["alerts_measured"] + hook["alerts_in_warmup"] == alert["alerts_expected"]
        assert alert["alerts_measured"] + alert["alerts_in_warmup"] == alert["alerts_expected"]


@pytest.mark.timeout(BENCH_DEADLINE_S + 60)
def test_replay_verify_audits_the_consumers_backlog(bench: BenchRun) -> None:
    case = bench.cases["feed-replay-verify"]
    assert "skipped" not in case
    [run] = case["detail"]["runs"]
    consumer = bench.cases["aiokafka-consumer"]["detail"]["runs"][0]
    assert run["events"] == consumer["events"] > 0
    assert run["events"] / run["seconds"] == pytest.approx(case["values"][0], rel=0.05)


@pytest.mark.timeout(BENCH_DEADLINE_S + 60)
def test_environment_and_workload_are_recorded(bench: BenchRun) -> None:
    env = bench.document["environment"]
    for key in ("python", "aiokafka", "faust", "confluent_kafka", "quixstreams", "kafka"):
        assert isinstance(env[key], str), key
        assert env[key], key
    assert env["cpu_count"] >= 1
    assert dt.datetime.fromisoformat(bench.document["date"]).tzinfo is not None
    workload = bench.document["workload"]
    assert 300 <= workload["event_bytes"]["mean"] <= 600
    # Account disruptions dominate, as in the sample.
    types = workload["event_types"]
    assert types["account-disrupted"] > sum(types.values()) / 2
    assert workload["rss_regions"] == 250


@pytest.mark.timeout(BENCH_DEADLINE_S + 60)
def test_stdout_is_a_markdown_table_of_every_case(bench: BenchRun) -> None:
    lines = bench.stdout.strip().splitlines()
    assert lines[0].startswith("| case |")
    assert lines[1].startswith("| --- |")
    rows = {line.split("|")[1].strip() for line in lines[2:]}
    assert rows == set(CASES)


def _bench_cli(kafka_bootstrap: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DISRUPTFEED_BOOTSTRAP_SERVERS": kafka_bootstrap}
    return subprocess.run(
        [sys.executable, "-m", "disruptfeed", "bench", "--quick", "--case", "feed-processor",
         *args],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip


def test_on_a_users_cluster_the_bench_asks_first(kafka_bootstrap: str) -> None:
    done = _bench_cli(kafka_bootstrap)  # no terminal, no --yes
    assert done.returncode == 4, done.stderr[-2_000:]
    assert "pass --yes" in done.stderr
    assert "creates and deletes topics named bench-*" in done.stderr


async def test_the_bench_will_not_run_beside_bench_like_topics_it_did_not_create(
    kafka_bootstrap: str,
) -> None:
    import uuid

    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    name = f"bench-{uuid.uuid4().hex[:8]}-someone-elses"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 1, 1)])
        done = _bench_cli(kafka_bootstrap, "--yes")
        assert done.returncode == 4, done.stderr[-2_000:]
        assert name in done.stderr
        assert name in await admin.list_topics()  # left alone
    finally:
        await admin.delete_topics([name])
        await admin.close()


def test_on_its_own_throwaway_broker_the_bench_asks_nothing() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DISRUPTFEED_BOOTSTRAP_SERVERS"}
    done = subprocess.run(
        [sys.executable, "-m", "disruptfeed", "bench", "--quick", "--case", "feed-processor"],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2_000:]
    assert "| feed-processor |" in done.stdout
