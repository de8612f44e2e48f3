"""The benchmark's result document: case figures, ratios, environment, and the Markdown table."""

from __future__ import annotations

__all__ = [
    "CASES",
    "CONSUMER_PEERS",
    "PRODUCER_PEERS",
    "CaseResult",
    "CaseSpec",
    "build_document",
    "environment",
    "format_ratio",
    "markdown_table",
]

import datetime as dt
import os
import platform
import re
import subprocess
from dataclasses import dataclass, field
from importlib import metadata
from statistics import median
from typing import Any, Final, Literal

Unit = Literal["events/s", "ms", "MB", "s"]
Family = Literal["producer", "consumer", "other"]


@dataclass(frozen=True, slots=True)
class CaseSpec:
    """A case's name, unit, and whose figures its throughput is compared with."""

    name: str
    unit: Unit
    family: Family


CASES: Final[tuple[CaseSpec, ...]] = (
    CaseSpec("kafka-producer", "events/s", "producer"),
    CaseSpec("aiokafka-producer", "events/s", "producer"),
    CaseSpec("confluent-producer", "events/s", "producer"),
    CaseSpec("feed-producer", "events/s", "producer"),
    CaseSpec("kafka-consumer", "events/s", "consumer"),
    CaseSpec("aiokafka-consumer", "events/s", "consumer"),
    CaseSpec("confluent-consumer", "events/s", "consumer"),
    CaseSpec("feed-pipeline", "events/s", "consumer"),
    CaseSpec("quix-pipeline", "events/s", "consumer"),
    CaseSpec("faust-floor", "events/s", "consumer"),
    CaseSpec("feed-processor", "events/s", "consumer"),
    CaseSpec("publish-to-alert-p50", "ms", "other"),
    CaseSpec("publish-to-alert-p99", "ms", "other"),
    CaseSpec("publish-to-webhook-p50", "ms", "other"),
    CaseSpec("publish-to-webhook-p99", "ms", "other"),
    CaseSpec("feed-replay-verify", "events/s", "consumer"),
    CaseSpec("worker-peak-rss", "MB", "other"),
    CaseSpec("worker-restore", "s", "other"),
)
"""Every case, in the order of the report."""

PRODUCER_PEERS: Final = ("aiokafka-producer", "kafka-producer")
"""Producer throughputs are compared with these (ratio_to_aiokafka, ratio_to_kafka)."""
CONSUMER_PEERS: Final = ("aiokafka-consumer", "kafka-consumer")
"""Consumer and pipeline throughputs are compared with these."""

_DIGITS: Final[dict[str, int]] = {"events/s": 1, "ms": 2, "MB": 1, "s": 2}


@dataclass(slots=True)
class CaseResult:
    """The measurements of one case: one value per run, or why there are none."""

    spec: CaseSpec
    values: list[float] = field(default_factory=list)
    skipped: str | None = None
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    """Per-run context (event counts, alerts seen, ...), for whoever reads the JSON."""

    def figures(self) -> dict[str, Any]:
        """``median``, ``min``, ``max`` (rounded for the unit; None when nothing was measured)."""
        if not self.values:
            return {"median": None, "min": None, "max": None}
        digits = _DIGITS[self.spec.unit]
        return {
            "median": round(median(self.values), digits),
            "min": round(min(self.values), digits),
            "max": round(max(self.values), digits),
        }


def _ratio(value: float | None, peer: float | None) -> float | None:
    if value is None or peer is None or peer <= 0:
        return None
    # Four significant digits: the pipelines' ratios to Kafka are far below 0.01.
    return float(f"{value / peer:.4g}")


def format_ratio(ratio: float | None) -> str:
    """``4.34x``, ``0.75x``, ``0.0047x``: two decimals, or two significant digits below 0.1."""
    if ratio is None:
        return ""
    return f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.2g}x"


def build_document(
    results: list[CaseResult], env: dict[str, Any], workload: dict[str, Any], mode: str
) -> dict[str, Any]:
    """The whole result document: one entry per case, with ratios computed from the medians."""
    medians = {r.spec.name: r.figures()["median"] for r in results}
    cases: list[dict[str, Any]] = []
    worst: list[tuple[float, str, str]] = []
    for result in results:
        spec = result.spec
        entry: dict[str, Any] = {"name": spec.name, "unit": spec.unit, **result.figures()}
        entry["runs"] = len(result.values)
        if spec.family != "other":
            peers = PRODUCER_PEERS if spec.family == "producer" else CONSUMER_PEERS
            for key, peer in zip(("ratio_to_aiokafka", "ratio_to_kafka"), peers, strict=True):
                entry[key] = ratio = _ratio(entry["median"], medians.get(peer))
                if ratio is not None and peer != spec.name:
                    worst.append((ratio, spec.name, peer))
        entry["values"] = [round(v, _DIGITS[spec.unit]) for v in result.values]
        if result.skipped is not None:
            entry["skipped"] = result.skipped
        if result.error is not None:
            entry["error"] = result.error
        if result.detail:
            entry["detail"] = result.detail
        cases.append(entry)
    return {
        "benchmark": "disruptfeed bench",
        "mode": mode,
        "date": env["date"],
        "environment": env,
        "workload": workload,
        "cases": cases,
        # The lowest ratio of any case to a peer other than itself: the headline number.
        "worst_ratio": (
            dict(zip(("ratio", "case", "peer"), min(worst), strict=True)) if worst else None
        ),
    }


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if unit == "events/s" else f"{value:,.{_DIGITS[unit]}f}"


def markdown_table(document: dict[str, Any]) -> str:
    """The cases as a GitHub Markdown table (ratios against the medians of the peers)."""
    lines = [
        "| case | unit | median | min | max | runs | vs aiokafka | vs Kafka |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for case in document["cases"]:
        unit = case["unit"]
        ratios = [case.get("ratio_to_aiokafka"), case.get("ratio_to_kafka")]
        shown = [format_ratio(r) for r in ratios]
        note = case.get("skipped") or case.get("error")
        median_text = f"— ({note})" if note else _fmt(case["median"], unit)
        lines.append(
            f"| {case['name']} | {unit} | {median_text} | {_fmt(case['min'], unit)} | "
            f"{_fmt(case['max'], unit)} | {case['runs']} | {shown[0]} | {shown[1]} |"
        )
    return "\n".join(lines)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _java_version() -> str | None:
    try:
        done = subprocess.run(
            ["java", "-version"], capture_output=True, timeout=30, check=False, text=True
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "([^"]+)"', done.stderr)
    return match.group(1) if match else None


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def environment(kafka_version: str, broker: str) -> dict[str, Any]:
    """Versions, machine and date: what a figure needs to be compared with another run's."""
    librdkafka: str | None = None
    try:
        import confluent_kafka

        librdkafka = str(confluent_kafka.libversion()[0])
    except ImportError:
        pass
    return {
        "date": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "python": platform.python_version(),
        "aiokafka": _version("aiokafka"),
        "faust": _version("faust-streaming"),
        "confluent_kafka": _version("confluent-kafka"),
        "librdkafka": librdkafka,
        "quixstreams": _version("quixstreams"),
        "disruptfeed": _version("disruptfeed"),
        "kafka": kafka_version,
        "broker": broker,
        "java": _java_version(),
        "cpu_count": os.cpu_count(),
        # Other work on the machine skews every figure; this says how busy it was at the start.
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
    }
