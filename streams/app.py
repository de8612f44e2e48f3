"""The Faust application: source topics -> agent -> event table -> counts -> alerts topic.

Run it with ``disruptfeed worker`` (or ``faust -A streams.app worker``). Settings come from the
project's one settings object (``DISRUPTFEED_*``).

Design, and why:
- One agent, concurrency 1 (faust #606: higher concurrency can commit past unprocessed records);
  scale with partitions and workers.
- At-least-once delivery with idempotent effects. The agent takes records in batches
  (``DISRUPTFEED_BATCH_SIZE``, ``DISRUPTFEED_BATCH_WAIT_MS``) and writes one ``events`` table row
  per source partition per batch: key ``topic:partition:offset`` of the row's first event, value
  the counted facts of each event with its id. The rows are the source of truth for counts and
  for the set of counted ids; they reach the changelog before the batch's offsets are committed,
  so a crashed worker recovers exactly the events it counted and re-reads the rest, skipping any
  already counted. (One row per event capped the worker at ~3,500 events/s: a changelog send and
  a RocksDB write per event.)
- Counts and the counted-id set are rebuilt in memory from the table after every recovery
  (``on_recover``) and kept by :class:`streams.CountStore`; Faust's windowed tables are not used
  (see the project's notes).
"""

from __future__ import annotations

__all__ = ["WorkerState", "create_app", "run_worker", "state_dir", "use_uvloop", "worker_state"]

import asyncio
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import faust

from disruptfeed._loop import use_uvloop
from disruptfeed.settings import Settings, get_settings
from disruptfeed.topics import ALERTS, DEAD_LETTER, cluster_id, event_types_by_topic
from schemas import DLQ_VALUE_BYTES_HEADER
from streams._alerts import alert_headers, alert_key, encode_alert
from streams._engine import AlertEngine
from streams._faust import as_current as _as_current
from streams._processor import Processor, dead_letter_headers
from streams._state import discard_stale_state
from streams._views import register_views
from streams._windows import Counted, CountStore

log = logging.getLogger(__name__)


@dataclass
class WorkerState:
    """What the agent and the web views share inside one worker process."""

    settings: Settings
    processor: Processor
    recovered: bool = False
    restored_events: int = 0
    seen: set[int] = field(default_factory=set)
    """Ids (``UUID.int``) of the events counted, rebuilt from the ``events`` table on recovery."""
    agent: Any = None
    """The counting agent (for ``agent.test_context()`` in unit tests)."""


def worker_state(app: faust.App) -> WorkerState:
    """The shared state of an app built by :func:`create_app`."""
    state: WorkerState = getattr(app, "feed_state")  # noqa: B009
    return state


def _broker_urls(bootstrap: str) -> list[str]:
    return [f"kafka://{host.strip()}" for host in bootstrap.split(",") if host.strip()]


def state_dir(settings: Settings, cluster: str | None) -> Path:
    """Where a worker keeps its tables: one directory per Kafka cluster and app id.

    Faust keeps one persisted changelog offset per table file; a file shared by two feeds (two
    topic prefixes) or two clusters (a broker whose data was reset) holds offsets that do not
    fit the other's changelog, and Faust stops at start with ConsistencyError, or, with a
    lower offset, silently mixes the two feeds' state.
    """
    return (
        settings.data_dir / "worker" / (cluster or "no-cluster") / f"{settings.topic_prefix}-worker"
    )


def create_app(settings: Settings | None = None, cluster: str | None = None) -> faust.App:
    """Build the Faust app for these settings (the process-wide ones by default).

    ``cluster`` is the Kafka cluster id, which names the state directory (:func:`state_dir`);
    :func:`run_worker` looks it up.
    """
    settings = settings or get_settings()
    datadir = state_dir(settings, cluster)
    # Faust makes its own directory but not the parents (a fresh DISRUPTFEED_DATA_DIR).
    datadir.mkdir(parents=True, exist_ok=True)
    topic_types = event_types_by_topic(settings)
    state = WorkerState(settings, Processor.for_settings(settings))
    app = faust.App(
        f"{settings.topic_prefix}-worker",
        broker=_broker_urls(settings.bootstrap),
        store=settings.worker_store,
        datadir=str(datadir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,
        table_standby_replicas=0,
        web_host=settings.worker_host,
        web_port=settings.worker_port,
        web_bind=settings.worker_host,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=settings.commit_interval,
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=min(3.0, settings.session_timeout / 3),
        producer_acks=-1,
        producer_linger=settings.linger_ms / 1000,
        producer_compression_type=settings.compression_type,
        # Topics take records up to 1 MiB (topics.py); Faust's default of 1,000,000 bytes would
        # refuse the alerts and dead letters the topics accept.
        producer_max_request_size=1024 * 1024,
        processing_guarantee="at_least_once",
        # The source topics may hold years of history; do not expire or clean table keys.
        table_cleanup_interval=3_600.0,
    )
    # Service.state is Faust's own; ours hangs off a name Faust does not use.
    setattr(app, "feed_state", state)  # noqa: B010

    source = app.topic(
        *topic_types,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        allow_empty=True,
    )
    dead_letter = app.topic(
        settings.topic(DEAD_LETTER), key_serializer="raw", value_serializer="raw"
    )
    alerts = app.topic(settings.topic(ALERTS), key_serializer="raw", value_serializer="raw")
    # Faust's recovery decodes changelog keys as JSON whatever the table's schema says (raw keys
    # fail there), so both tables use JSON keys and values.
    # "topic:partition:offset" -> [[event id, *counted facts], ...]: see the module docstring.
    events = app.Table("events", default=None, partitions=settings.partitions)
    # alert fingerprint -> its episode (a dict): alerts survive a restart mid-episode.
    episodes = app.Table("alert-episodes", default=None, partitions=settings.partitions)

    @events.on_recover
    async def rebuild() -> None:
        # Recovery (re)fills the tables for the partitions this worker owns; state follows them.
        store = CountStore(grace_ms=settings.grace_seconds * 1000)
        seen: set[int] = set()
        state.restored_events = store.restore(_stored_facts(events.items(), seen))
        state.seen = seen
        state.processor.store = store
        engine = AlertEngine(state.processor.engine.rules)
        engine.restore(dict(episodes.items()))
        state.processor.engine = engine
        state.processor.rebuilt()  # sweeps know the restored episodes' partitions again
        state.recovered = True
        log.info("rebuilt counts from %d stored events", state.restored_events)

    @app.on_partitions_revoked.connect
    async def recovering(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        # A rebalance: /health says 'recovering' until on_recover has rebuilt the state.
        state.recovered = False

    sinks = _Sinks(events, episodes, dead_letter, alerts)

    @app.agent(source, concurrency=1)
    async def count_events(stream: Any) -> None:
        wait = settings.batch_wait_ms / 1000
        async for batch in stream.take_events(settings.batch_size, within=wait):
            await _count_batch(state, sinks, batch)

    state.agent = count_events
    register_views(app, state)
    return app


@dataclass(frozen=True)
class _Sinks:
    """Where the agent writes: its two tables and two output topics."""

    events: Any
    episodes: Any
    dead_letter: Any
    alerts: Any


async def _count_batch(state: WorkerState, sinks: _Sinks, batch: Sequence[Any]) -> None:
    """Count a batch of source records: dead letters, alerts and one table row per partition.

    A record whose handling fails (a sink refused it, say) is dead-lettered with the exception
    as its reason, by reference, and the rest of the batch is still counted: Faust acknowledges
    the whole batch whatever happens, so an exception escaping here would lose all of it.
    """
    rows: dict[int, tuple[Any, list[list[Any]]]] = {}
    for record in batch:
        try:
            await _count_one(state, sinks, record, rows)
        except Exception as exc:
            msg = record.message
            log.exception("could not handle %s[%d]@%d; dead-lettered", msg.topic, msg.partition,
                          msg.offset)  # fmt: skip
            reasons = dead_letter_headers(msg.topic, msg.partition, msg.offset, exc)
            reasons.append((DLQ_VALUE_BYTES_HEADER, str(len(msg.value or b"")).encode()))
            await sinks.dead_letter.send(key=msg.key, value=b"", headers=reasons)
    for first, facts in rows.values():
        with _as_current(first):
            msg = first.message
            sinks.events[f"{msg.topic}:{msg.partition}:{msg.offset}"] = facts


async def _count_one(
    state: WorkerState, sinks: _Sinks, record: Any, rows: dict[int, tuple[Any, list[list[Any]]]]
) -> None:
    processor, seen, episodes = state.processor, state.seen, sinks.episodes
    msg = record.message
    outcome = processor.process(
        msg.topic,
        msg.partition,
        msg.offset,
        msg.key,
        msg.value,
        _headers(msg.headers),
        seen=seen.__contains__,
        timestamp_ms=int(msg.timestamp * 1000) if msg.timestamp else None,
    )
    if outcome.dead_letter is not None:
        dl = outcome.dead_letter
        await sinks.dead_letter.send(key=dl.key, value=dl.value or b"", headers=dl.headers)
        return
    for alert in outcome.alerts:
        # The alert is acknowledged before its episode row is written: killed in between, the
        # record (not committed) is read again and raises the same alert, same id, again;
        # the other way round, a restored episode would hide a transition nobody received.
        sent = await sinks.alerts.send(
            key=alert_key(alert), value=encode_alert(alert), headers=alert_headers(alert)
        )
        await sent
        key = alert.fingerprint
        current = processor.engine.episode_state(key)
        with _as_current(record):
            if current is not None:
                episodes[key] = current
            elif key in episodes:
                del episodes[key]
    if outcome.counted is not None and outcome.event is not None:
        event_id = outcome.event.event_id
        seen.add(event_id.int)
        rows.setdefault(msg.partition, (record, []))[1].append([str(event_id), *outcome.counted])


def _stored_facts(rows: Iterable[tuple[Any, Any]], seen: set[int]) -> Iterator[Counted]:
    """The counted facts of ``events`` table rows, adding each event id to ``seen``."""
    for key, value in rows:
        if value and isinstance(value[0], list):
            for event_id, *facts in value:
                seen.add(UUID(event_id).int)
                yield Counted(*facts)
        elif value:  # a row of the first release: key = event id, value = its facts
            seen.add(UUID(key).int)
            yield Counted(*value)


def _headers(raw: Any) -> list[tuple[str, bytes]]:
    if not raw:
        return []
    items = raw.items() if isinstance(raw, dict) else raw
    return [(str(k), bytes(v) if v is not None else b"") for k, v in items]


def run_worker(settings: Settings, loglevel: str = "warning") -> None:
    """Run a worker in this process until SIGTERM or Ctrl-C, then shut down cleanly."""
    cluster = asyncio.run(cluster_id(settings))
    if settings.worker_store.startswith("rocksdb"):
        app_id = f"{settings.topic_prefix}-worker"
        asyncio.run(discard_stale_state(settings, state_dir(settings, cluster), app_id))
    use_uvloop()
    app = create_app(settings, cluster)
    log.info("worker state in %s", state_dir(settings, cluster))
    worker = faust.Worker(app, loglevel=loglevel, redirect_stdouts=False)
    # Faust's terminal spinner turns the root logger to DEBUG so that it spins on every record:
    # building a debug record per sent message cost ~8% of the worker's time (py-spy).
    worker.spinner = None
    worker.execute_from_commandline()
