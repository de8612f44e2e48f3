"""Publish-to-alert latency: a steady stream into a running worker, alerts read back.

The stream is made of bursts (see :func:`disruptfeed.bench._events.burst_events`) and the rule
set holds one threshold rule that fires on the last event of every burst, never repeats, and
resolves between bursts. A ``firing`` alert lists the event that made it fire last among its
``sample_event_ids``, so each alert maps to one published event: the latency is from the moment
that event was handed to :meth:`FeedProducer.publish_many` to the moment the alert was read
from the alerts topic, both on this process's monotonic clock.

With ``webhook_port``, the same stream is also timed to a webhook receiver served here, to
which a ``disruptfeed dispatcher`` (another process) delivers the alerts: publish-to-webhook is
publish-to-alert plus the dispatcher's read, its durable bookkeeping and the signed HTTP POST,
measured on the same events in the same run.
"""

from __future__ import annotations

__all__ = ["alert_rules", "publish_to_alert", "webhook_path"]

import asyncio
import contextlib
import gc
import time
from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from disruptfeed._aiokafka import start_consumer_client
from disruptfeed.bench._errors import BenchError
from disruptfeed.settings import Settings
from disruptfeed.topics import ALERTS
from producers import FeedProducer, PublishOutcome
from schemas import AccountDisrupted

_TICK_S = 0.005
_HIGHEST_US = 3_600 * 1_000_000  # an hour: anything slower is a failure, not a latency

webhook_path = "/bench-webhook"
"""The receiver's path (its URL is ``http://127.0.0.1:<webhook_port><webhook_path>``)."""


def alert_rules(burst: int) -> str:
    """A rules file (TOML) whose one rule fires once per burst of ``burst`` events."""
    return (
        "# Written by disruptfeed bench: fires on the last event of every burst.\n"
        'repeat_interval = "never"\n\n'
        "[[rule]]\n"
        'name = "bench-burst"\n'
        'kind = "threshold"\n'
        'event_type = "account.disrupted"\n'
        'window = "1h"\n'
        f"threshold = {burst}\n"
        'severity = "critical"\n'
    )


async def publish_to_alert(
    settings: Settings,
    events: Sequence[AccountDisrupted],
    *,
    burst: int,
    rate: float,
    warmup_s: float,
    drain_s: float,
    webhook_port: int | None = None,
) -> dict[str, Any]:
    """Publish ``events`` at ``rate`` per second and time each alert they cause.

    The worker (and the dispatcher, with ``webhook_port``) must already be healthy and
    consuming. Alerts caused by events published in the first ``warmup_s`` seconds are received
    but not measured.

    Returns:
        ``p50_ms``, ``p99_ms`` and counts (alerts expected, measured, warm-up), mean, max; with
        ``webhook_port``, the same figures for the webhooks under ``"webhook"``.

    Raises:
        BenchError: not every expected alert (or webhook) arrived within ``drain_s`` after the
            last publish.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition

    with _collector_paused():
        expected = len(events) // burst
        published: dict[str, float] = {}
        arrivals: list[tuple[float, float]] = []  # (published at, received at)
        hooks: list[tuple[float, float]] = []
        server: Any = None
        all_hooks: asyncio.Event | None = None
        if webhook_port is not None:
            server, all_hooks = await _serve_webhooks(webhook_port, published, hooks, expected)
        consumer = AIOKafkaConsumer(
            **settings.client_kwargs(), enable_auto_commit=False, auto_offset_reset="earliest"
        )
        await start_consumer_client(consumer)
        receiver: asyncio.Task[None] | None = None
        try:
            parts = [TopicPartition(settings.topic(ALERTS), p) for p in range(settings.partitions)]
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            receiver = asyncio.create_task(_receive(consumer, published, arrivals, expected))
            started, seconds = await _publish(settings, events, rate, published)
            try:
                await asyncio.wait_for(receiver, timeout=drain_s)
                if all_hooks is not None:
                    await asyncio.wait_for(all_hooks.wait(), timeout=drain_s)
            except TimeoutError:
                raise BenchError(
                    f"{len(arrivals)} of {expected} alerts (and {len(hooks)} webhooks) arrived "
                    f"within {drain_s:g} s of the last publish"
                ) from None
        finally:
            if receiver is not None:
                receiver.cancel()
                await asyncio.gather(receiver, return_exceptions=True)
            await consumer.stop()
            if server is not None:
                await server.cleanup()
        figures = _summary(arrivals, started + warmup_s)
        if server is not None:
            if len(hooks) != expected:
                raise BenchError(f"{len(hooks)} webhooks arrived for {expected} alerts")
            figures["webhook"] = _summary(hooks, started + warmup_s)
        return {
            **figures,
            "alerts_expected": expected,
            "events": len(events),
            "achieved_rate": round(len(events) / seconds, 1),
        }


def _summary(arrivals: list[tuple[float, float]], measured_from: float) -> dict[str, Any]:
    figures = _percentiles([got - at for at, got in arrivals if at >= measured_from])
    return {**figures, "alerts_in_warmup": len(arrivals) - figures["alerts_measured"]}


async def _serve_webhooks(
    port: int, published: dict[str, float], hooks: list[tuple[float, float]], expected: int
) -> tuple[Any, asyncio.Event]:
    """A webhook receiver on 127.0.0.1:``port`` noting when each firing alert's POST came.

    Returns the aiohttp runner (``cleanup()`` stops it) and an event set once ``expected``
    firing alerts came.
    """
    done = asyncio.Event()
    from aiohttp import web

    async def receive(request: web.Request) -> web.Response:
        received = time.perf_counter()
        body = orjson.loads(await request.read())
        alert = body["data"]
        if alert["status"] == "firing":
            trigger = published.get(alert["sample_event_ids"][-1])
            if trigger is None:
                raise BenchError(f"a webhook names an event never published: {alert}")
            hooks.append((trigger, received))
            if len(hooks) >= expected:
                done.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post(webhook_path, receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, done


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No garbage collection inside: this process's own pauses would count as latency.

    The bench process both publishes and timestamps arrivals, and holds every event of the run. A
    collection of that heap paused it, and one or two alerts a run seemed 230-980 ms late; with
    the collector off while timing, the worst alert of the same run took 61 ms.
    """
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


async def _receive(
    consumer: Any, published: dict[str, float], arrivals: list[tuple[float, float]], expected: int
) -> None:
    """Read alerts until ``expected`` firing ones have arrived, noting when each did."""
    while len(arrivals) < expected:
        batches = await consumer.getmany(timeout_ms=200)
        received = time.perf_counter()
        for records in batches.values():
            for record in records:
                alert = orjson.loads(record.value)
                if alert["status"] != "firing":
                    continue
                # The event that made the rule fire is the newest of the alert's samples.
                trigger = published.get(alert["sample_event_ids"][-1])
                if trigger is None:
                    raise BenchError(f"an alert names an event never published: {alert}")
                arrivals.append((trigger, received))


async def _publish(
    settings: Settings,
    events: Sequence[AccountDisrupted],
    rate: float,
    published: dict[str, float],
) -> tuple[float, float]:
    """Publish at a steady rate, noting when each event went; returns (start, seconds)."""
    async with FeedProducer(settings) as producer:

        async def send(batch: Sequence[AccountDisrupted]) -> list[PublishOutcome]:
            now = time.perf_counter()
            for event in batch:
                published[str(event.event_id)] = now
            return await producer.publish_many(batch)

        # Not awaited one by one: a batch waiting for its acknowledgement must not hold the
        # next one back, or the rate would follow the broker instead of the clock.
        sends: list[asyncio.Task[list[PublishOutcome]]] = []
        started = time.perf_counter()
        sent = 0
        while sent < len(events):
            due = min(len(events), int((time.perf_counter() - started) * rate) + 1)
            if due > sent:
                sends.append(asyncio.create_task(send(events[sent:due])))
                sent = due
            await asyncio.sleep(_TICK_S)
        outcomes = [o for batch in await asyncio.gather(*sends) for o in batch]
        seconds = time.perf_counter() - started
    if not all(o.ok for o in outcomes):
        raise BenchError("some events of the steady stream were not published")
    return started, seconds


def _percentiles(latencies_s: list[float]) -> dict[str, Any]:
    """p50 and p99 through an HdrHistogram (microsecond resolution, 3 significant digits)."""
    from hdrh.histogram import HdrHistogram

    if not latencies_s:
        raise BenchError("no alert was caused after the warm-up")
    histogram = HdrHistogram(1, _HIGHEST_US, 3)
    for seconds in latencies_s:
        histogram.record_value(max(1, round(seconds * 1e6)))
    return {
        "p50_ms": histogram.get_value_at_percentile(50) / 1000,
        "p99_ms": histogram.get_value_at_percentile(99) / 1000,
        "mean_ms": round(sum(latencies_s) / len(latencies_s) * 1000, 2),
        "max_ms": round(max(latencies_s) * 1000, 2),
        "alerts_measured": len(latencies_s),
    }
