"""The ``feed-replay-verify`` case: an audit of the consumers' backlog, replayed and verified.

The backlog is published untimed through :class:`producers.FeedProducer` (so every record is
sequenced and signed, as in production) with fresh event ids, and a checkpoint is signed over
it, as the checkpointer would have done. Timed: ``disruptfeed replay`` of its whole event-time
range to a JSON Lines file, then ``disruptfeed audit verify`` against the checkpoint topic
(Merkle tree, every event's signature and sequence). The figure is backlog events per second
of both together; the consumer cases read the same number of records once.
"""

from __future__ import annotations

__all__ = ["replay_verify_rate"]

import asyncio
import datetime as dt
import time
from pathlib import Path
from typing import Any

import orjson

from disruptfeed._keys import load_signing_key, trusted_keys
from disruptfeed.audit._checkpoint import make_checkpoint, parse_checkpoint, read_checkpoints
from disruptfeed.audit._replay import ReplayFilter, replay
from disruptfeed.audit._verify import verify
from disruptfeed.bench._errors import BenchError
from disruptfeed.bench._events import MEAN_GAP_S, T0, event_chunks
from disruptfeed.settings import Settings
from producers import FeedProducer

_SEED = 20261204  # not the consumers' seed: the ids must not repeat theirs


async def _load(settings: Settings, count: int) -> tuple[dt.datetime, dt.datetime]:
    # A chunk at a time (a million events would not fit in memory as models), ending before
    # T0: a history running into the future would be refused (future-event-time).
    start = T0 - dt.timedelta(seconds=count * MEAN_GAP_S * 1.1)
    first = last = None
    async with FeedProducer(settings) as producer:
        for events in event_chunks(count, 20_000, _SEED, start):
            outcomes = await producer.publish_many(events)
            if failed := [o for o in outcomes if not o.ok]:
                raise BenchError(f"loading the audit backlog: {failed[0].error}")
            first = first or events[0].occurred_at
            last = events[-1].occurred_at
    await make_checkpoint(settings, load_signing_key(settings, create=True))
    if first is None or last is None:
        raise BenchError("an empty audit backlog: nothing to replay")
    return first, last + dt.timedelta(seconds=1)


async def _audit(
    settings: Settings, since: dt.datetime, until: dt.datetime, out: Path
) -> tuple[int, Any, float]:
    """Replay then verify; also the seconds the replay part took."""
    started = time.perf_counter()
    result = await replay(settings, ReplayFilter(since=since, until=until))
    with out.open("wb") as handle:
        for item in result.events:
            handle.write(item.value + b"\n")
    replayed = time.perf_counter() - started
    checkpoints = [
        parse_checkpoint(value, f"checkpoint at offset {offset}")
        for offset, value in await read_checkpoints(settings)
    ]
    report = await verify(settings, checkpoints, trusted_keys(settings))
    return len(result.events), report, replayed


def replay_verify_rate(
    settings: Settings, count: int, scratch: Path
) -> tuple[float, dict[str, Any]]:
    """Events per second of replay plus full verification of a ``count``-event backlog."""
    settings = settings.model_copy(update={"data_dir": scratch / "audit"})
    since, until = asyncio.run(_load(settings, count))
    started = time.perf_counter()
    replayed, report, replay_s = asyncio.run(
        _audit(settings, since, until, scratch / "replay.jsonl")
    )
    elapsed = time.perf_counter() - started
    if replayed != count or not report.ok or report.events_verified != count:
        findings = orjson.dumps([str(f) for f in report.findings[:3]]).decode()
        raise BenchError(
            f"the audit of {count} events replayed {replayed}, verified "
            f"{report.events_verified}, findings {findings}"
        )
    return count / elapsed, {
        "events": count,
        "seconds": round(elapsed, 3),
        "replay_seconds": round(replay_s, 3),
        "verify_seconds": round(elapsed - replay_s, 3),
    }
