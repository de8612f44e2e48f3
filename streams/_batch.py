"""How the worker's agent handles a batch of source records, and rebuilds its state.

One batch: each record through :class:`streams.Processor`, its dead letters and alerts sent and
acknowledged, then one ``events`` table row per source partition (see :mod:`streams._rows`), and
compaction of rows beyond the dedupe horizon once a day of stream time. :func:`restore_state`
rebuilds the counts, ids and episodes from the tables after a recovery.
"""

from __future__ import annotations

__all__ = ["Sinks", "compact_if_due", "count_batch", "restore_state"]

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from disruptfeed._metrics import Buckets
from schemas import DLQ_VALUE_BYTES_HEADER
from streams._alerts import alert_headers, alert_key, encode_alert
from streams._engine import AlertEngine
from streams._faust import as_current as _as_current
from streams._holes import fill_holes
from streams._processor import Stats, dead_letter_headers
from streams._rows import OFFSETS, Row, compact, read_rows
from streams._seen import DAY_MS
from streams._windows import CountStore
from streams._worker_state import WorkerState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sinks:
    """Where the agent writes: its two tables and two output topics."""

    events: Any
    episodes: Any
    dead_letter: Any
    alerts: Any


async def count_batch(state: WorkerState, sinks: Sinks, batch: Sequence[Any]) -> None:
    """Count a batch of source records: dead letters, alerts and one table row per partition.

    The batch's dead letters and alerts are all queued before any acknowledgement is awaited
    (awaited one at a time, each waited out a linger and a round trip, and a stream of bad
    records or an alert storm went at a few hundred records a second). Every acknowledgement is
    in before the rows that record the transitions are written: killed in between, the records
    (not committed) are read again from the restored state and raise the same alerts, same ids,
    again.

    A record whose handling fails (a sink still refused it after retries, say) is dead-lettered
    with the exception as its reason, by reference, and the rest of the batch is still counted:
    Faust acknowledges the whole batch whatever happens, so an exception escaping here would
    lose all of it. The failed record had already changed the counts and episodes in memory, so
    they are rebuilt from the tables and the batch's other records replayed (without sending
    again): memory then holds what a restart would restore. Failures are rare; a rebuild costs
    a read of the tables.
    """
    rows: dict[int, Row] = {}
    stats = state.processor.stats.copy()
    failed: dict[int, str] = {}  # index in the batch -> the reason its dead letter counts under
    handled: dict[int, dict[str, int]] = {}  # partition -> source -> the last offset handled
    in_flight: list[_InFlight] = []
    if state.fill is not None:
        batch = await fill_holes(state.processor.replayed, state.fill, batch, state.starts)
    for i, record in enumerate(batch):
        msg = record.message
        handled.setdefault(msg.partition, {})[f"{msg.topic}:{msg.partition}"] = msg.offset
        try:
            await _count_one(state, sinks, record, rows, in_flight=in_flight, index=i)
        except Exception as exc:
            failed[i] = await _dead_letter_failed(sinks, record, exc)
            rows = await _replayed(state, sinks, _without(batch[:i], failed), stats)
    late: list[int] = []
    for i, error in await _acknowledged(in_flight):
        if failed.get(i) == "internal":  # its own dead letter was refused: one by reference
            await _dead_letter_failed(sinks, batch[i], error, "internal")
        elif i not in failed:
            failed[i] = await _dead_letter_failed(sinks, batch[i], error)
            late.append(i)
    if late:
        rows = await _replayed(state, sinks, _without(batch, failed), stats)
    state.processor.stats.processed += len(failed)
    for reason in failed.values():
        state.processor.stats.dead_letter(reason)
    engine = state.processor.engine  # after a failure's rebuild, the rebuilt one
    for row in rows.values():
        for fp, entry in row.episodes.items():
            # Each episode's latest state: what it became with the last record that changed it,
            # or later in this batch by a sweep's touch, which the row's offsets cover too.
            entry[1] = engine.episode_state(fp)
        row.offsets.update(handled.pop(row.first.message.partition, {}))
        with _as_current(row.first):
            msg = row.first.message
            key = f"{msg.topic}:{msg.partition}:{msg.offset}"
            sinks.events[key] = row.value()
        # [event id, event type, region, occurred_ms, accounts, late, source]: see Counted
        state.rows.note(key, ((e[6], e[3]) for e in row.events))
    for partition, offsets in handled.items():
        # Nothing counted there (duplicates, dead letters): the offsets alone, in one row per
        # partition, so a restart does not take what follows for a hole and read them again.
        first = next(r for r in batch if r.message.partition == partition)
        with _as_current(first):
            sinks.events[f"{OFFSETS}{partition}"] = {"offsets": offsets}
    for partition, row in rows.items():
        compact_if_due(state, sinks, partition, row.first)
    _observe_latency(state.latency, batch)


def _without(records: Sequence[Any], failed: dict[int, str]) -> list[Any]:
    return [r for j, r in enumerate(records) if j not in failed]


async def _dead_letter_failed(
    sinks: Sinks, record: Any, exc: Exception, code: str = "handling-failed"
) -> str:
    """Dead-letter a record whose handling failed, by reference; the reason it counts under."""
    if isinstance(exc, _HalfApplied):
        return "internal"  # the processor's own dead letter is already on its way
    msg = record.message
    log.error("could not handle %s[%d]@%d (%r); dead-lettered", msg.topic, msg.partition,
              msg.offset, exc, exc_info=exc)  # fmt: skip
    reasons = dead_letter_headers(msg.topic, msg.partition, msg.offset, exc, code)
    reasons.append((DLQ_VALUE_BYTES_HEADER, str(len(msg.value or b"")).encode()))
    await _send(sinks.dead_letter, key=msg.key, value=b"", headers=reasons)
    return code


def _observe_latency(latency: Buckets, batch: Sequence[Any]) -> None:
    """One sample per record: its timestamp (publish time) to now, the batch handled."""
    now = time.time()
    observe = latency.observe
    for record in batch:
        stamp = record.message.timestamp
        if stamp:
            observe(max(0.0, now - stamp))


def compact_if_due(state: WorkerState, sinks: Sinks, partition: int, record: Any) -> None:
    """Fold a partition's rows older than the dedupe horizon into its summary, once a day.

    Once per day of stream time (and once after each recovery) per partition: a scan of the
    table, in memory. The deleted rows then leave the changelog at its next compaction, so a
    restart reads the horizon's rows, not the whole history.
    """
    processor = state.processor
    horizon = processor.dedupe_horizon_ms
    if horizon is None:
        return
    # The partition's few sources, not every series: this runs once per partition per batch.
    cuts = {
        source: mark - horizon for source, mark in processor.store.watermarks_on(partition).items()
    }
    if not cuts:
        return
    day = min(cuts.values()) // DAY_MS
    if state.compacted.get(partition) == day:
        return
    state.compacted[partition] = day
    # Read as this partition's record: Faust's RocksDB store looks a key up in the current
    # event's partition only, and a batch may end on another partition.
    with _as_current(record):
        plan = compact(partition, state.rows, sinks.events, cuts)
    if not plan.deleted and not plan.absorbed:
        return
    with _as_current(record):
        sinks.events[f"summary:{partition}"] = plan.summary  # first: see streams._rows
        for key in plan.deleted:
            del sinks.events[key]
            state.rows.forget(key)
    log.info("partition %d: %d events older than the dedupe horizon summarised, %d rows "
             "deleted", partition, plan.absorbed, len(plan.deleted))  # fmt: skip


async def _replayed(
    state: WorkerState, sinks: Sinks, records: Sequence[Any], stats: Stats
) -> dict[int, Row]:
    """The state from the tables, then ``records`` counted again without sending anything."""
    restore_state(state, sinks.events.items, sinks.episodes.items())
    state.processor.stats = stats.copy()
    rows: dict[int, Row] = {}
    for record in records:
        await _count_one(state, sinks, record, rows)
    return rows


class _HalfApplied(Exception):
    """A record was dead-lettered by the processor after a bug of ours may have half applied it."""


_SEND_ATTEMPTS: Final = 6
"""Tries of a send whose error is retriable (a leader moving, a broker restarting) before the
record is given up as failed: 0.2 s doubling, about 6 s in all, on top of the producer's own."""


async def _send(topic: Any, *, key: Any, value: bytes, headers: Any) -> None:
    """Send one record and wait for its acknowledgement, retrying retriable errors."""
    for attempt in range(_SEND_ATTEMPTS):
        try:
            sent = await topic.send(key=key, value=value, headers=headers)
            await sent
            return
        except Exception as exc:
            if not getattr(exc, "retriable", False) or attempt == _SEND_ATTEMPTS - 1:
                raise
            log.warning("send to %s failed (%s); retrying", getattr(topic, "name", topic), exc)
            await asyncio.sleep(0.2 * 2**attempt)  # backoff between tries, not a wait for a state


@dataclass(frozen=True, slots=True)
class _InFlight:
    """A send whose acknowledgement is awaited at the end of its batch."""

    index: int
    """The batch record it belongs to."""
    topic: Any
    record: dict[str, Any]
    ack: Any


async def _acknowledged(in_flight: list[_InFlight]) -> list[tuple[int, Exception]]:
    """Await every acknowledgement; a send refused with a retriable error is sent again.

    Returns:
        The batch records whose sends failed for good, with the error.
    """
    failures: list[tuple[int, Exception]] = []
    for sent in in_flight:
        try:
            await sent.ack
        except Exception as exc:
            if not getattr(exc, "retriable", False):
                failures.append((sent.index, exc))
                continue
            try:
                await _send(sent.topic, **sent.record)
            except Exception as again:
                failures.append((sent.index, again))
    return failures


async def _queue(in_flight: list[_InFlight] | None, index: int, topic: Any, **message: Any) -> None:
    """Queue a send for batch record ``index``, its acknowledgement joining ``in_flight``.

    None: nothing is sent (a replay). A send refused before it was even queued is retried now.
    """
    if in_flight is None:
        return
    try:
        ack = await topic.send(**message)
    except Exception as exc:
        if not getattr(exc, "retriable", False):
            raise
        await _send(topic, **message)  # not even queued: retried now, with backoff
    else:
        in_flight.append(_InFlight(index, topic, message, ack))


async def _count_one(
    state: WorkerState,
    sinks: Sinks,
    record: Any,
    rows: dict[int, Row],
    *,
    in_flight: list[_InFlight] | None = None,
    index: int = 0,
) -> None:
    """Count one record into ``rows``; its sends join ``in_flight`` (None: nothing is sent)."""
    processor = state.processor
    msg = record.message
    outcome = processor.process(
        msg.topic,
        msg.partition,
        msg.offset,
        msg.key,
        msg.value,
        _headers(msg.headers),
        timestamp_ms=int(msg.timestamp * 1000) if msg.timestamp else None,
    )
    changed = processor.engine.take_changed()
    if outcome.dead_letter is not None:
        dl = outcome.dead_letter
        await _queue(in_flight, index, sinks.dead_letter, key=dl.key, value=dl.value or b"",
                     headers=dl.headers)  # fmt: skip
        if outcome.internal_error:
            raise _HalfApplied
    else:
        for alert in outcome.alerts:
            await _queue(
                in_flight,
                index,
                sinks.alerts,
                key=alert_key(alert),
                value=encode_alert(alert),
                headers=alert_headers(alert),
            )
    # A record whose send fails leaves no trace in the rows: they are rebuilt without it.
    if changed or outcome.counted is not None:
        row = rows.get(msg.partition)
        if row is None:
            row = rows[msg.partition] = Row(record)
        for fp in changed:
            # The state is read when the batch ends (count_batch): an episode that changes
            # with every event of a burst is serialised once per batch, not once per event.
            row.episodes[fp] = [msg.offset, None]
    if outcome.counted is not None and outcome.event is not None:
        rows[msg.partition].events.append([str(outcome.event.event_id), *outcome.counted])


def restore_state(
    state: WorkerState,
    event_rows: Callable[[], Iterable[tuple[Any, Any]]],
    episode_rows: Iterable[tuple[Any, Any]],
) -> None:
    """Rebuild the counts, the counted ids and the alert episodes from the worker's tables.

    ``event_rows`` gives the ``events`` table's rows (read twice, see :func:`read_rows`);
    ``episode_rows`` is the ``alert-episodes`` table, which releases before this one wrote;
    the episodes in ``events`` rows (see :mod:`streams._rows`) take precedence, the latest by
    source offset for each fingerprint (each episode changes only with its own partition's
    records).
    """
    settings = state.settings
    restored = read_rows(event_rows)
    store = CountStore(grace_ms=settings.grace_seconds * 1000)
    state.restored_events = store.restore(restored.facts)
    for totals in restored.totals:  # complete once the facts are read
        store.add_totals(*totals)
    state.processor.store = store
    state.processor.seen = restored.seen
    state.processor.replayed = restored.replayed
    state.rows = restored.index
    episodes: dict[str, Any] = dict(episode_rows)
    for fp, (_, episode) in restored.episodes.items():
        if episode is None:
            episodes.pop(fp, None)
        else:
            episodes[fp] = episode
    engine = AlertEngine(state.processor.engine.rules)
    engine.restore(episodes)
    state.processor.engine = engine
    state.processor.rebuilt()  # sweeps know the restored episodes' partitions again
    state.compacted.clear()  # each partition is compacted once after a recovery
    state.recovered = True


def _headers(raw: Any) -> list[tuple[str, bytes]]:
    if not raw:
        return []
    items = raw.items() if isinstance(raw, dict) else raw
    return [(str(k), bytes(v) if v is not None else b"") for k, v in items]
