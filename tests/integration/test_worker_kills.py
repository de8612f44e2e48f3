"""A worker SIGKILLed again and again while it counts: no transition is lost or invented."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest

from consumers import read_alerts
from disruptfeed.sample import build_sample
from producers import FeedProducer
from schemas import Alert
from streams._recount import recount
from tests.conftest import SettingsFactory
from tests.integration.worker import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KILLS = 10


def _transitions(alerts: list[Alert]) -> dict[Any, tuple[str, str, int]]:
    """Firing and resolved messages by id (repeats of a firing alert are not transitions)."""
    return {a.alert_id: (a.fingerprint, a.status, a.repeat) for a in alerts if a.repeat == 0}


async def test_alerts_survive_ten_kills(make_settings: SettingsFactory, tmp_path: Path) -> None:
    settings = await make_settings()
    events = build_sample()  # the default rules over the sample: dozens of episodes
    # In event-time order, cut in eleven: every kill lands while episodes fire and resolve.
    size = -(-len(events) // (KILLS + 1))
    chunks = [events[i * size : (i + 1) * size] for i in range(KILLS + 1)]
    rng = random.Random(12)
    worker = WorkerProcess(settings, tmp_path / "worker")
    published = 0

    async with FeedProducer(settings) as producer:
        for chunk in chunks[:KILLS]:
            await asyncio.to_thread(worker.start)
            await asyncio.to_thread(worker.wait_healthy)
            assert all(o.ok for o in await producer.publish_many(chunk))
            published += len(chunk)
            # Killed somewhere while it works through what it was just sent.
            target = rng.randrange(1, len(chunk))

            def reached(t: int = target) -> bool:
                return bool(worker.get("/health")["processed"] >= t)

            await asyncio.to_thread(worker.wait_for, reached, f"{target} records processed")
            await asyncio.to_thread(worker.kill)
        assert all(o.ok for o in await producer.publish_many(chunks[KILLS]))
        published += len(chunks[KILLS])
    assert published == len(events)

    history = await recount(settings)  # the worker's own code over the history, in one pass
    expected = history.processor.store.snapshot()

    def finish() -> None:
        worker.start()
        try:
            worker.wait_healthy()
            worker.wait_for(lambda: worker.get("/counts") == expected, "exact counts")
        finally:
            worker.stop()

    await asyncio.to_thread(finish)
    published_alerts = [a async for a in read_alerts(settings, start="earliest", until_end=True)]
    got, derived = _transitions(published_alerts), _transitions(history.alerts)
    # The sample's 2.7 years in order: the tables are compacted past the 30-day dedupe horizon
    # as the kills go on, and the default rules fire and resolve dozens of episodes.
    assert len(derived) > 40
    missing = {k: v for k, v in derived.items() if k not in got}
    invented = {k: v for k, v in got.items() if k not in derived}
    assert (missing, invented) == ({}, {})
    # No episode is left firing that the history resolves: the last transition agrees.
    last_got: dict[str, str] = {}
    for alert in published_alerts:
        if alert.repeat == 0:
            last_got[alert.fingerprint] = alert.status
    last_derived = {a.fingerprint: a.status for a in history.alerts if a.repeat == 0}
    assert last_got == last_derived
