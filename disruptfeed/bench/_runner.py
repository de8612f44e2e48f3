"""Runs the cases: workloads, fresh topics per case and run, the broker, progress.

Runs go round the cases (run 1 of every case, then run 2, ...), so a slow drift of the machine
or the broker spreads over every case instead of landing on the last ones. Each case run gets
its own topic prefix, and its topics (the worker's and Quix's internal ones included, since
they carry the prefix) are deleted afterwards.
"""

from __future__ import annotations

__all__ = ["FULL", "QUICK", "Bench", "Plan"]

import asyncio
import contextlib
import dataclasses
import logging
import shutil
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from disruptfeed.bench import _clients as clients
from disruptfeed.bench._audit import replay_verify_rate
from disruptfeed.bench._errors import BenchError
from disruptfeed.bench._events import (
    Record,
    burst_events,
    encode,
    feed_events,
    region_mix,
    size_stats,
    week_events,
)
from disruptfeed.bench._floor import floor_rate
from disruptfeed.bench._latency import alert_rules, publish_to_alert, webhook_path
from disruptfeed.bench._processor import processor_rate
from disruptfeed.bench._quix import quix_rate
from disruptfeed.bench._report import CASES, CaseResult
from disruptfeed.bench._restore import restore_figures
from disruptfeed.bench._topics import BENCH_MARK, create_topics, delete_topics, first_group
from disruptfeed.bench._worker import BenchDispatcher, BenchWorker, drain_rate
from disruptfeed.broker import free_port
from disruptfeed.errors import BrokerError
from disruptfeed.settings import Settings
from disruptfeed.topics import EVENT_TOPICS
from schemas import AccountDisrupted, EventBase

log = logging.getLogger(__name__)

_LATENCY = ("publish-to-alert-p50", "publish-to-alert-p99")
_WEBHOOK = ("publish-to-webhook-p50", "publish-to-webhook-p99")
_TIMED_TOGETHER = (_LATENCY[1], *_WEBHOOK)
"""Measured with publish-to-alert-p50, on the same stream: never run on their own."""


@dataclass(frozen=True, slots=True)
class Plan:
    """How much work each case does.

    Attributes:
        runs: Runs per case.
        events: Events for the producer cases (and the consumers' backlog).
        consumer_passes: The consumers' backlog is the events this many times over, so that
            their timed part lasts long enough to mean something (they are that fast).
        pipeline_events: The backlog of feed-pipeline and quix-pipeline (the first events).
        alert_rate: Events per second of the publish-to-alert stream.
        alert_seconds: How long that stream lasts.
        burst: Events per burst in that stream (one alert per burst).
        rss_per_day: Events per region per day for worker-peak-rss (250 regions, 7 days).
        restore_events: The history worker-restore counts, then restarts on.
    """

    runs: int
    events: int
    consumer_passes: int
    pipeline_events: int
    alert_rate: int
    alert_seconds: float
    burst: int
    rss_per_day: int
    restore_events: int

    @property
    def warmup_s(self) -> float:
        """Alerts caused in the stream's first seconds are not measured."""
        return min(2.0, self.alert_seconds / 5)


QUICK = Plan(
    runs=1,
    events=20_000,
    consumer_passes=2,
    pipeline_events=8_000,
    alert_rate=200,
    alert_seconds=10.0,
    burst=20,
    rss_per_day=4,
    restore_events=20_000,
)
"""A smoke run: every case once, in well under three minutes on two cores."""
FULL = Plan(
    runs=3,
    events=200_000,
    consumer_passes=3,
    pipeline_events=90_000,
    alert_rate=1_000,
    alert_seconds=60.0,
    burst=25,
    rss_per_day=24,
    restore_events=1_000_000,
)
"""The figures worth publishing: about ten minutes on two cores."""


class Bench:
    """The cases of one benchmark run, against one broker.

    Args:
        settings: Settings pointing at the broker (``bootstrap_servers`` set).
        plan: Sizes and run count.
        workdir: Scratch space (payload files, worker and Quix state); emptied as it goes.
        lib: Kafka's jar directory (for ProducerPerformance and ConsumerPerformance).
        say: Progress lines.
    """

    def __init__(
        self, settings: Settings, plan: Plan, workdir: Path, lib: Path, say: Callable[[str], None]
    ) -> None:
        self.settings = settings
        self.plan = plan
        self.workdir = workdir
        self.lib = lib
        self.say = say
        self.run_id = uuid.uuid4().hex[:8]
        self.webhooks = True
        """Whether publish-to-alert also times a dispatcher's webhooks (set by :meth:`run`)."""

    # --- workloads (built once, shared by every case) ------------------------------------------
    @cached_property
    def events(self) -> list[EventBase]:
        """The events of the producer and consumer cases."""
        return feed_events(self.plan.events)

    @cached_property
    def records(self) -> list[Record]:
        """:attr:`events` as records."""
        return encode(self.events)

    @cached_property
    def pipeline_records(self) -> list[Record]:
        """The pipelines' backlog: the first ``pipeline_events`` records."""
        return self.records[: self.plan.pipeline_events]

    @cached_property
    def week_records(self) -> list[Record]:
        """worker-peak-rss's backlog: 7 days of events for 250 regions."""
        return encode(week_events(self.plan.rss_per_day))

    @cached_property
    def burst_events(self) -> list[AccountDisrupted]:
        """The publish-to-alert stream: ``alert_rate x alert_seconds`` events in bursts."""
        return burst_events(round(self.plan.alert_rate * self.plan.alert_seconds), self.plan.burst)

    def workload(self) -> dict[str, Any]:
        """What the cases were given, for the report."""
        s = self.settings
        return {
            "events": len(self.records),
            "event_types": dict(Counter(r.topic for r in self.records)),
            "event_bytes": size_stats(self.records),
            "region_mix": region_mix(self.events),
            "consumer_events": _accounts(self.records) * self.plan.consumer_passes,
            "pipeline_events": len(self.pipeline_records),
            "alert_stream": {
                "rate": self.plan.alert_rate,
                "seconds": self.plan.alert_seconds,
                "burst": self.plan.burst,
                "warmup_seconds": self.plan.warmup_s,
            },
            "rss_events": len(self.week_records),
            "rss_regions": 250,
            "rss_days": 7,
            "producer": {
                "acks": "all",
                "idempotence": True,
                "compression": s.compression_type,
                "linger_ms": s.linger_ms,
                "batch_bytes": s.max_batch_size,
            },
            "partitions": s.partitions,
            "plan": dataclasses.asdict(self.plan),
        }

    # --- running --------------------------------------------------------------------------------
    def run(
        self, only: set[str] | None = None, tick: Callable[[], object] | None = None
    ) -> list[CaseResult]:
        """Run every case (or those in ``only``) ``plan.runs`` times; never raises for one case."""
        if only and only & set(_TIMED_TOGETHER):
            only = only | {_LATENCY[0]}  # the one stream that measures them all
        results = {spec.name: CaseResult(spec) for spec in CASES if not only or spec.name in only}
        self.webhooks = any(name in results for name in _WEBHOOK)
        self.say("warming the broker up (first producer id, first consumer group) ...")
        self.warm_up()
        for run in range(1, self.plan.runs + 1):
            for name, result in results.items():
                if result.skipped or result.error or name in _TIMED_TOGETHER:
                    continue  # measured with publish-to-alert-p50
                self.say(f"run {run}/{self.plan.runs}: {name}")
                try:
                    self._one(name, run, results)
                except Exception as exc:  # one broken case must not cost the others' figures
                    self.say(f"{name} failed: {exc}")
                    log.debug("%s failed", name, exc_info=True)
                    result.error = str(exc).splitlines()[0][:300] if str(exc) else repr(exc)
                    if name == _LATENCY[0]:
                        for other in _TIMED_TOGETHER:
                            if other in results:
                                results[other].error = result.error
                if tick is not None:
                    tick()
        return list(results.values())

    def warm_up(self) -> None:
        """Do, untimed, what a fresh broker does slowly once: so the first case is not charged.

        The first idempotent producer waits for the broker's first producer id, and the first
        consumer group for the offsets topic (50 partitions) to be created and loaded.
        """
        prefix = f"{BENCH_MARK}-{self.run_id}-warmup"
        settings = self.settings.model_copy(update={"topic_prefix": prefix})
        quiet = logging.getLogger("aiokafka")
        level = quiet.level
        # aiokafka logs the coordinator's expected "not available yet" as ERROR while it waits.
        quiet.setLevel(logging.CRITICAL)
        try:
            asyncio.run(create_topics(settings))
            asyncio.run(first_group(settings, feed_events(100)))
        except Exception as exc:
            raise BrokerError(
                f"the broker at {settings.bootstrap} failed the warm-up: {exc}"
            ) from exc
        finally:
            quiet.setLevel(level)
            asyncio.run(delete_topics(settings, prefix))

    def _one(self, name: str, run: int, results: dict[str, CaseResult]) -> None:
        # Zero-padded: no prefix is a substring of another's, which topic deletion relies on.
        prefix = f"{BENCH_MARK}-{self.run_id}-{name}-{run:02d}"
        settings = self.settings.model_copy(update={"topic_prefix": prefix})
        scratch = self.workdir / prefix
        scratch.mkdir(parents=True)
        try:
            asyncio.run(create_topics(settings))
            value, detail = self._measure(name, settings, scratch)
        finally:
            asyncio.run(delete_topics(settings, prefix))
            shutil.rmtree(scratch, ignore_errors=True)
        if name == _LATENCY[0]:
            webhook = detail.get("webhook", {})
            for case, figures, key in (
                (_LATENCY[0], detail, "p50_ms"),
                (_LATENCY[1], detail, "p99_ms"),
                (_WEBHOOK[0], webhook, "p50_ms"),
                (_WEBHOOK[1], webhook, "p99_ms"),
            ):
                if case in results and key in figures:
                    results[case].values.append(float(figures[key]))
                    results[case].detail.setdefault("runs", []).append(figures)
        else:
            results[name].values.append(value)
            results[name].detail.setdefault("runs", []).append(detail)
        self.say(f"  {name}: {value:,.1f}" if name != _LATENCY[0] else f"  {detail}")

    def _measure(self, name: str, s: Settings, scratch: Path) -> tuple[float, dict[str, Any]]:
        """One run of one case on settings ``s``: (its figure, detail)."""
        records, sent = self.records, {"events": len(self.records)}
        cases: dict[str, Callable[[], tuple[float, dict[str, Any]]]] = {
            "kafka-producer": lambda: (
                clients.kafka_produce(self.lib, s, records, scratch),
                {**sent, "topic": "account-disrupted only"},
            ),
            "aiokafka-producer": lambda: (asyncio.run(clients.aiokafka_produce(s, records)), sent),
            "confluent-producer": lambda: (clients.confluent_produce(s, records), sent),
            "feed-producer": lambda: self._feed_produce(s, scratch),
            "kafka-consumer": lambda: self._consume(name, s, scratch),
            "aiokafka-consumer": lambda: self._consume(name, s, scratch),
            "confluent-consumer": lambda: self._consume(name, s, scratch),
            "feed-pipeline": lambda: self._drain(s, self.pipeline_records, scratch),
            "quix-pipeline": lambda: self._quix(s, scratch),
            "faust-floor": lambda: self._floor(s, scratch),
            "feed-processor": lambda: processor_rate(s, self.pipeline_records),
            _LATENCY[0]: lambda: self._latency(s, scratch),
            "worker-peak-rss": lambda: self._rss(s, scratch),
            "worker-restore": lambda: restore_figures(
                s, self.plan.restore_events, scratch, self.lib, self.say
            ),
            "feed-replay-verify": lambda: replay_verify_rate(
                s, _accounts(self.records * self.plan.consumer_passes), scratch
            ),
        }
        if name not in cases:
            raise BenchError(f"no such case: {name}")
        return cases[name]()

    def _feed_produce(self, s: Settings, scratch: Path) -> tuple[float, dict[str, Any]]:
        """FeedProducer's rate, and what its records (signed, lz4) cost on the broker's disk."""
        rate = asyncio.run(clients.feed_produce(s, self.events))
        topics = [s.topic(name) for name in EVENT_TOPICS]
        at_rest = sum(clients.log_dir_bytes(self.lib, s, topics, scratch).values())
        return rate, {
            "events": len(self.events),
            "signed": s.sign_events,
            "bytes_per_event_at_rest": round(at_rest / len(self.events), 1),
        }

    def _consume(self, name: str, s: Settings, scratch: Path) -> tuple[float, dict[str, Any]]:
        """Pre-load the records, then time one consumer through the account topic's share."""
        backlog = self.records * self.plan.consumer_passes
        clients.confluent_produce(s, backlog)  # the fastest loader at hand
        count = _accounts(backlog)
        if name == "kafka-consumer":
            rate = clients.kafka_consume(self.lib, s, count, scratch)
        elif name == "aiokafka-consumer":
            rate = asyncio.run(clients.aiokafka_consume(s, count))
        else:
            rate = clients.confluent_consume(s, count)
        return rate, {"events": count, "topic": "account-disrupted"}

    def _quix(self, s: Settings, scratch: Path) -> tuple[float, dict[str, Any]]:
        """The pipelines' backlog, through the Quix app (it reads the account topic only)."""
        clients.confluent_produce(s, self.pipeline_records)
        return quix_rate(s, _accounts(self.pipeline_records), scratch)

    def _floor(self, s: Settings, scratch: Path) -> tuple[float, dict[str, Any]]:
        """The pipelines' backlog, through a Faust agent that does nothing with it."""
        clients.confluent_produce(s, self.pipeline_records)
        return floor_rate(s, len(self.pipeline_records), scratch)

    def _rss(self, s: Settings, scratch: Path) -> tuple[float, dict[str, Any]]:
        """Peak RSS of a worker once it holds 7 days of windows for 250 regions."""
        _, detail = self._drain(s, self.week_records, scratch)
        return float(detail["peak_rss_mb"]), detail

    def _drain(
        self, s: Settings, backlog: list[Record], scratch: Path
    ) -> tuple[float, dict[str, Any]]:
        """Pre-load ``backlog``, then time a fresh worker through it; also its peak RSS."""
        clients.confluent_produce(s, backlog)
        with BenchWorker(s, scratch / "worker") as worker:
            rate, detail = drain_rate(worker, len(backlog), timeout=600.0)
            regions = len({r.key for r in backlog})
            peak = round(worker.peak_rss_mb(), 1)
        return rate, {"events": len(backlog), "regions": regions, "peak_rss_mb": peak, **detail}

    def _latency(self, s: Settings, scratch: Path) -> tuple[float, dict[str, Any]]:
        """publish-to-alert; with a publish-to-webhook case asked for, also to a webhook."""
        plan = self.plan
        rules = scratch / "rules.toml"
        rules.write_text(alert_rules(plan.burst), encoding="utf-8")
        port = free_port() if self.webhooks else None
        with contextlib.ExitStack() as services:
            worker = services.enter_context(BenchWorker(s, scratch / "worker", rules))
            if port is not None:
                dispatcher = BenchDispatcher(s, scratch / "dispatcher")
                # Before the dispatcher starts, so its first read of the registry has it.
                asyncio.run(_subscribe(dispatcher.settings, port))
                services.enter_context(dispatcher)
                dispatcher.wait_for(lambda h: h["subscriptions"] >= 1, "the subscription", 120.0)
            worker.wait_healthy()
            figures = asyncio.run(
                publish_to_alert(
                    s,
                    self.burst_events,
                    burst=plan.burst,
                    rate=plan.alert_rate,
                    warmup_s=plan.warmup_s,
                    drain_s=max(60.0, plan.alert_seconds * 2),
                    webhook_port=port,
                )
            )
        return float(figures["p50_ms"]), figures


async def _subscribe(settings: Settings, port: int) -> None:
    """A webhook subscription, for every alert, to the bench's receiver on ``port``."""
    from consumers._registry import SubscriptionAdmin

    async with SubscriptionAdmin(settings) as admin:
        await admin.create(
            f"http://127.0.0.1:{port}{webhook_path}", description="disruptfeed bench receiver"
        )


def _accounts(records: list[Record]) -> int:
    return sum(r.topic == clients.ACCOUNT_TOPIC for r in records)
