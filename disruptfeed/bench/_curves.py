"""``disruptfeed bench --curves``: how each cost grows as the work grows (docs/benchmarks.md).

Four curves, each a few points measured in one run:

- the processor (in a fresh child process per point) against the number of active regions, and
  against how much history it holds (days of event time at a fixed rate): events per second,
  and the memory its state keeps (resident set after minus before);
- the worker pipeline against partitions (one worker, a pre-loaded backlog) and against workers
  (two sharing the partitions, the backlog published once both are counting);
- replay plus verification against the size of the history.

The document is JSON, and the plot a PNG drawn with matplotlib (the ``bench`` extra).
"""

from __future__ import annotations

__all__ = ["CURVE_PLANS", "CurvePlan", "Curves", "curves_table", "measure_curves", "plot_curves"]

import asyncio
import gc
import json
import multiprocessing
import resource
import shutil
import sys
import time
import tracemalloc
import urllib.error
import urllib.request
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from disruptfeed.bench import _clients as clients
from disruptfeed.bench._audit import replay_verify_rate
from disruptfeed.bench._errors import BenchError
from disruptfeed.bench._events import encode, feed_events, rate_events, region_events
from disruptfeed.bench._processor import processor_rate
from disruptfeed.bench._topics import BENCH_MARK, delete_topics
from disruptfeed.bench._worker import BenchWorker, drain_rate
from disruptfeed.settings import Settings
from disruptfeed.topics import create_topics

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass(frozen=True, slots=True)
class CurvePlan:
    """The points of each curve."""

    regions: tuple[int, ...]
    region_events: int
    history_days: tuple[float, ...]
    history_rate: float
    """Events per second of event time in the history curve."""
    partitions: tuple[int, ...]
    workers: tuple[int, ...]
    pipeline_events: int
    replay_sizes: tuple[int, ...]


CURVE_PLANS = {
    "full": CurvePlan(
        regions=(10, 50, 250),
        region_events=60_000,
        history_days=(1, 7),
        history_rate=1.0,
        partitions=(1, 3, 6),
        workers=(1, 2),
        pipeline_events=60_000,
        replay_sizes=(10_000, 100_000, 1_000_000),
    ),
    "quick": CurvePlan(
        regions=(10, 50, 250),
        region_events=10_000,
        history_days=(1, 7),
        history_rate=0.2,
        partitions=(1, 3, 6),
        workers=(1, 2),
        pipeline_events=8_000,
        replay_sizes=(2_000, 10_000),
    ),
}


def _processor_point(settings_json: str, kind: str, x: float, plan: CurvePlan) -> dict[str, Any]:
    """In a child: build the workload, then process it; rate, then memory.

    The rate is the median of three plain passes; the state's size from a second pass with a fresh
    processor under tracemalloc (which slows it), as the memory still allocated after it since
    tracing began: the records were built before, so only what the processor keeps is counted.
    """
    settings = Settings.model_validate_json(settings_json)
    if kind == "regions":
        events: list[Any] = region_events(plan.region_events, int(x))
    else:
        events = rate_events(x, plan.history_rate)
    records = encode(events)
    del events
    # The median of three passes, each with a fresh processor: one pass is a few seconds.
    rates = sorted(processor_rate(settings, records)[0] for _ in range(3))
    rate = rates[1]
    gc.collect()
    tracemalloc.start()
    try:
        kept = _kept(settings, records)
        gc.collect()
        state = tracemalloc.get_traced_memory()[0] - sys.getsizeof(kept)
    finally:
        tracemalloc.stop()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "x": x,
        "events_per_s": round(rate, 1),
        "state_mb": round(state / 2**20, 1),
        "peak_rss_mb": round(peak, 1),
        "events": len(records),
        "rates": [round(r, 1) for r in rates],
    }


def _kept(settings: Settings, records: list[Any]) -> Any:
    """What a processor keeps after ``records`` (the processor itself, alive)."""
    from disruptfeed.topics import event_types_by_topic
    from streams._processor import Processor

    processor = Processor.for_settings(settings)
    processor.topic_types = event_types_by_topic(settings)
    for i, r in enumerate(records):  # partitioned as processor_rate does
        partition = zlib.crc32(r.key) % settings.partitions
        processor.process(settings.topic(r.topic), partition, i, r.key, r.value, r.headers)
    return processor


class Curves:
    """Runs the curves against one broker (the bench's), on fresh ``bench-`` topics."""

    def __init__(
        self, settings: Settings, plan: CurvePlan, workdir: Path, run_id: str, say: Any
    ) -> None:
        self.settings, self.plan, self.workdir, self.run_id, self.say = (
            settings,
            plan,
            workdir,
            run_id,
            say,
        )

    def _fresh(self, name: str, **update: Any) -> tuple[Settings, Path, str]:
        prefix = f"{BENCH_MARK}-{self.run_id}-curve-{name}"
        settings = self.settings.model_copy(update={"topic_prefix": prefix, **update})
        scratch = self.workdir / prefix
        scratch.mkdir(parents=True)
        asyncio.run(create_topics(settings))
        return settings, scratch, prefix

    def _cleanup(self, settings: Settings, scratch: Path, prefix: str) -> None:
        asyncio.run(delete_topics(settings, prefix))
        shutil.rmtree(scratch, ignore_errors=True)

    def processor(self, kind: str, xs: tuple[float, ...]) -> list[dict[str, Any]]:
        points = []
        spawn = multiprocessing.get_context("spawn")  # a clean process: its memory is the point's
        for x in xs:
            self.say(f"curves: processor against {kind} = {x:g}")
            with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
                job = pool.submit(
                    _processor_point, self.settings.model_dump_json(), kind, x, self.plan
                )
                points.append(job.result())
        return points

    def partitions(self) -> list[dict[str, Any]]:
        points = []
        records = encode(feed_events(self.plan.pipeline_events))
        for p in self.plan.partitions:
            self.say(f"curves: pipeline against partitions = {p}")
            s, scratch, prefix = self._fresh(f"partitions-{p:02d}", partitions=p)
            try:
                clients.confluent_produce(s, records)
                with BenchWorker(s, scratch / "worker") as worker:
                    rate, detail = drain_rate(worker, len(records), timeout=600.0)
                points.append({"x": p, "events_per_s": round(rate, 1), **detail})
            finally:
                self._cleanup(s, scratch, prefix)
        return points

    def workers(self) -> list[dict[str, Any]]:
        points = []
        records = encode(feed_events(self.plan.pipeline_events))
        partitions = max(self.plan.partitions)
        for n in self.plan.workers:
            self.say(f"curves: pipeline against workers = {n} ({partitions} partitions)")
            s, scratch, prefix = self._fresh(f"workers-{n:02d}", partitions=partitions)
            started: list[BenchWorker] = []
            try:
                for i in range(n):
                    worker = BenchWorker(s, scratch / f"worker-{i}")
                    worker.start()
                    started.append(worker)
                _settled(started)
                clients.confluent_produce(s, records)
                rate, detail = _drain_many(started, len(records), timeout=600.0)
                points.append({"x": n, "events_per_s": round(rate, 1), **detail})
            finally:
                for worker in started:
                    worker.stop()
                self._cleanup(s, scratch, prefix)
        return points

    def replay(self) -> list[dict[str, Any]]:
        points = []
        for size in self.plan.replay_sizes:
            self.say(f"curves: replay-verify against history = {size:,} events")
            s, scratch, prefix = self._fresh(f"replay-{size}")
            try:
                rate, detail = replay_verify_rate(s, size, scratch)
                points.append({"x": size, "events_per_s": round(rate, 1), **detail})
            finally:
                self._cleanup(s, scratch, prefix)
        return points


def _settled(workers: list[BenchWorker], timeout: float = 120.0) -> None:
    """Wait until every worker is healthy and the group's partitions are split among them."""
    deadline = time.monotonic() + timeout
    for worker in workers:
        worker.wait_healthy()
    while time.monotonic() < deadline:
        if all(_document(w, "/ready").get("partitions") for w in workers):
            return
        time.sleep(0.2)  # polling /ready: a worker's assignment signals nothing else
    raise BenchError("the workers never all held partitions")


def _document(worker: BenchWorker, path: str) -> dict[str, Any]:
    """The worker's /ready (or /health) document, 503 or not; {} when it does not answer."""
    url = worker.health_url.removesuffix("/health") + path
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - our own URL
            data: dict[str, Any] = json.load(response)
    except urllib.error.HTTPError as exc:
        with exc:
            data = json.load(exc)
    except (OSError, ValueError):
        return {}
    return data


def _drain_many(
    workers: list[BenchWorker], total: int, timeout: float
) -> tuple[float, dict[str, Any]]:
    """Events per second of several workers through ``total`` events, first count to last."""
    deadline = time.monotonic() + timeout
    started: float | None = None
    healths: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        # Whatever each says of itself (a worker recovering from the join still counts).
        healths = [_document(w, "/health") for w in workers]
        counted = sum(int(h.get("counted", 0)) for h in healths)
        now = time.perf_counter()
        if started is None and counted > 0:
            started, first = now, counted
        if started is not None and counted >= total:
            return (total - first) / (now - started), {
                "timed_events": total - first,
                "seconds": round(now - started, 3),
                "per_worker": [h.get("counted") for h in healths],
            }
        time.sleep(0.05)  # polling /health while timing
    said = [{k: h.get(k) for k in ("status", "counted", "dead_lettered")} for h in healths]
    raise BenchError(
        f"{len(workers)} workers did not count {total} events in {timeout:g} s: {said}\n"
        + "\n".join(w.tail(15) for w in workers)
    )


def measure_curves(curves: Curves) -> dict[str, Any]:
    """Every curve's points, as the document's ``curves`` part."""
    plan = curves.plan
    steps: list[tuple[str, str, str, Callable[[], list[dict[str, Any]]]]] = [
        ("processor-regions", "active regions", "events/s",
         lambda: curves.processor("regions", tuple(float(r) for r in plan.regions))),
        ("processor-history", f"days of history at {plan.history_rate:g} events/s", "events/s",
         lambda: curves.processor("history", plan.history_days)),
        ("pipeline-partitions", "partitions (1 worker)", "events/s", curves.partitions),
        ("pipeline-workers", f"workers ({max(plan.partitions)} partitions)", "events/s",
         curves.workers),
        ("replay-verify", "events of history", "events/s", curves.replay),
    ]  # fmt: skip
    out: dict[str, Any] = {}
    for name, x_label, y_label, measure in steps:
        try:
            out[name] = {"x_label": x_label, "y_label": y_label, "points": measure()}
        except Exception as exc:  # one broken curve must not cost the others
            curves.say(f"{name} failed: {exc}")
            out[name] = {"x_label": x_label, "y_label": y_label, "points": [], "error": str(exc)}
    return out


def curves_table(curves: dict[str, Any]) -> str:
    """A Markdown table per curve."""
    lines: list[str] = []
    for name, curve in curves.items():
        lines += [f"### {name}", ""]
        if curve.get("error"):
            lines += [f"not measured: {curve['error']}", ""]
            continue
        extra = "state MB" if name.startswith("processor") else "seconds"
        lines += [f"| {curve['x_label']} | events/s | {extra} |", "| ---: | ---: | ---: |"]
        for point in curve["points"]:
            other = point.get("state_mb", point.get("seconds", ""))
            x = point["x"]
            shown = f"{x:,.0f}" if float(x).is_integer() else f"{x:g}"
            lines.append(f"| {shown} | {point['events_per_s']:,.0f} | {other} |")
        lines.append("")
    return "\n".join(lines)


def plot_curves(curves: dict[str, Any], path: Path) -> None:
    """Draw every curve into one PNG (matplotlib, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(curves)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.8), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        curve = curves[name]
        points = curve["points"]
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(curve["x_label"], fontsize=8)
        if not points:
            ax.text(0.5, 0.5, "not measured", ha="center", transform=ax.transAxes)
            continue
        xs = [p["x"] for p in points]
        ax.plot(xs, [p["events_per_s"] for p in points], "o-", color="tab:blue")
        ax.set_ylabel("events/s", color="tab:blue", fontsize=8)
        ax.set_ylim(bottom=0)
        if name == "replay-verify":
            ax.set_xscale("log")
        else:
            ax.set_xticks(xs)
        if name.startswith("processor"):
            twin = ax.twinx()
            twin.plot(xs, [p["state_mb"] for p in points], "s--", color="tab:red")
            twin.set_ylabel("state MB", color="tab:red", fontsize=8)
            twin.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
