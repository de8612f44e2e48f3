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
  already counted. The same row carries the alert episodes its events changed, so restored
  episodes always match restored counts (see :mod:`streams._rows`). (One row per event capped
  the worker at ~3,500 events/s: a changelog send and a RocksDB write per event.)
- Counts and the counted-id set are rebuilt in memory from the table after every recovery
  (``on_recover``) and kept by :class:`streams.CountStore`; Faust's windowed tables are not used
  (see the project's notes).
"""

from __future__ import annotations

__all__ = [
    "WorkerState",
    "create_app",
    "restore_state",
    "run_worker",
    "shared_memory_store_warning",
    "state_dir",
    "use_uvloop",
    "worker_state",
]

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import faust
from prometheus_client import CollectorRegistry

from disruptfeed._http import application_options
from disruptfeed._logging import LogFormat, configure_logging, startup_finished
from disruptfeed._loop import use_uvloop
from disruptfeed._metrics import Buckets, LagMonitor, new_registry
from disruptfeed.auth import check_bind
from disruptfeed.settings import Settings, get_settings
from disruptfeed.topics import ALERTS, DEAD_LETTER, cluster_id, event_types_by_topic
from schemas import DLQ_VALUE_BYTES_HEADER
from streams._alerts import alert_headers, alert_key, encode_alert
from streams._credentials import broker_credentials
from streams._dashboard import register_dashboard
from streams._engine import AlertEngine
from streams._faust import as_current as _as_current
from streams._faust import durable_flush, seek_uncommitted_to_beginning
from streams._metrics import register_metrics_views, worker_collectors
from streams._processor import Processor, Stats, dead_letter_headers
from streams._rows import Row, RowIndex, compact, foreign_rows, read_rows
from streams._seen import DAY_MS
from streams._state import discard_stale_state
from streams._views import register_views
from streams._windows import CountStore

log = logging.getLogger(__name__)


@dataclass
class WorkerState:
    """What the agent and the web views share inside one worker process."""

    settings: Settings
    processor: Processor
    recovered: bool = False
    restored_events: int = 0
    rows: RowIndex = field(default_factory=RowIndex)
    """The ``events`` table's batch rows and their event times, for compaction."""
    compacted: dict[int, int] = field(default_factory=dict)
    """Partition -> the day (of its slowest source's cut) its table rows were last compacted to."""
    agent: Any = None
    """The counting agent (for ``agent.test_context()`` in unit tests)."""
    source_partitions: Callable[[], set[tuple[str, int]]] = set
    """The source (topic, partition) pairs assigned to this worker now."""
    lag: LagMonitor | None = None
    """The group's lag on :attr:`source_partitions`, measured in the background (create_app)."""
    latency: Buckets = field(default_factory=Buckets)
    """Seconds from each record's timestamp to the end of the batch that handled it."""
    recovery_started: float | None = None
    """``time.monotonic()`` when the current recovery began (a rebalance); None when recovered."""
    restore_seconds: float | None = None
    """How long the last recovery took, rebalance to counts rebuilt."""
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    """The worker's own metrics registry (/metrics), never prometheus_client's global one."""
    warned_memory_store: bool = False
    """Whether :func:`shared_memory_store_warning` was logged already."""


def shared_memory_store_warning(store: str, assigned: int, total: int) -> str | None:
    """What to say when a memory:// worker shares the source partitions with other workers.

    Faust's in-memory store keeps no changelog offsets: a partition that moves between workers
    is recovered from the changelog's start over what the store holds, and in the two-worker
    tests that stalled recovery ("No event received for active tp") or left totals short.
    RocksDB keeps its offsets and passes the same tests; memory:// is for one worker.
    """
    if not store.startswith("memory") or assigned >= total:
        return None
    return (
        f"this worker holds {assigned} of the feed's {total} source partitions with "
        "DISRUPTFEED_WORKER_STORE=memory://, whose recovery is not reliable when partitions "
        "move between workers: set DISRUPTFEED_WORKER_STORE=rocksdb:// on every worker"
    )


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
    tokens = settings.bearer_tokens()
    state = WorkerState(settings, Processor.for_settings(settings))
    app = faust.App(
        f"{settings.topic_prefix}-worker",
        broker=_broker_urls(settings.bootstrap),
        # TLS and SASL from the same settings as every other client (the mechanism included).
        broker_credentials=broker_credentials(settings),
        store=settings.worker_store,
        datadir=str(datadir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,
        table_standby_replicas=0,
        web_host=settings.worker_host,
        web_port=settings.worker_port,
        web_bind=settings.worker_host,
        # Every request passes our token check and limits (disruptfeed._http), and none of
        # Faust's own views is served: /table and /router read tables and topology, /graph and
        # the statistics expose internals, and the project uses none of them. Faust's
        # production index ("/", {"status": "OK"}) has no switch: register_dashboard drops it
        # and serves the dashboard there. Sessions: the dashboard's sign-in cookie.
        web_application_options=application_options(settings, tokens, sessions=True),
        web_tables_enabled=False,
        web_router_enabled=False,
        web_stats_enabled=False,
        web_graph_enabled=False,
        web_metrics_enabled=False,
        # Announced to the group in each assignment: how peers reach this worker's API.
        canonical_url=settings.worker_url
        or f"http://{settings.worker_host}:{settings.worker_port}",
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
    # Offsets are committed after a producer flush that must include every table row written,
    # and records Faust drops around a rebalance are read again from the committed offsets,
    # or from the start where the group never committed: see streams._faust.
    durable_flush(app.producer.buffer)
    seek_uncommitted_to_beginning(app.consumer._thread, set(topic_types))  # type: ignore[attr-defined]

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
    # Batch rows and per-partition summaries: see streams._rows.
    events = app.Table(
        "events",
        default=None,
        partitions=settings.partitions,
        # Rows deleted by compaction leave the changelog only once their segment is closed
        # and cleaned: short segments keep what a start-up reads close to the dedupe horizon.
        extra_topic_configs={
            "segment.ms": str(settings.changelog_segment_seconds * 1000),
            "segment.bytes": str(64 * 1024 * 1024),
            "min.cleanable.dirty.ratio": "0.2",
        },
    )
    # alert fingerprint -> its episode (a dict): alerts survive a restart mid-episode.
    episodes = app.Table("alert-episodes", default=None, partitions=settings.partitions)

    @events.on_recover
    async def rebuild() -> None:
        # Recovery (re)fills the tables for the partitions this worker owns; state follows them.
        active = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic in topic_types}
        for key in foreign_rows(list(events.data.keys()), active):
            del events.data[key]  # the local store only: no tombstone to the changelog
        restore_state(state, events.items, episodes.items())
        if state.recovery_started is not None:
            state.restore_seconds = time.monotonic() - state.recovery_started
            state.recovery_started = None
        log.info("rebuilt counts from %d stored events", state.restored_events)

    @app.on_partitions_revoked.connect
    async def recovering(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        # A rebalance: /health says 'recovering' until on_recover has rebuilt the state.
        state.recovered = False
        state.recovery_started = time.monotonic()

    @app.on_partitions_assigned.connect
    async def assigned(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        if state.recovery_started is None:  # the first assignment: no revocation before it
            state.recovery_started = time.monotonic()
        warning = shared_memory_store_warning(
            settings.worker_store, len(source_partitions()), len(topic_types) * settings.partitions
        )
        if warning and not state.warned_memory_store:
            state.warned_memory_store = True
            log.warning("%s", warning)

    def source_partitions() -> set[tuple[str, int]]:
        actives = app.assignor.assigned_actives()
        return {(tp.topic, tp.partition) for tp in actives if tp.topic in topic_types}

    state.source_partitions = source_partitions
    # Faust's consumer group is the app id; it reads without isolation (at_least_once).
    state.lag = LagMonitor(
        settings, app.conf.id, source_partitions, isolation_level="read_uncommitted"
    )

    @app.task  # type: ignore[untyped-decorator]
    async def measure_lag() -> None:
        assert state.lag is not None
        await state.lag.run()

    sinks = _Sinks(events, episodes, dead_letter, alerts)

    @app.agent(source, concurrency=1)
    async def count_events(stream: Any) -> None:
        wait = settings.batch_wait_ms / 1000
        async for batch in stream.take_events(settings.batch_size, within=wait):
            await _count_batch(state, sinks, batch)

    state.agent = count_events
    state.registry = new_registry(worker_collectors(state))
    register_views(app, state)
    register_dashboard(app, settings, tokens)
    register_metrics_views(app, state)
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

    Every alert is acknowledged before the row that records its transition is written: killed
    in between, the records (not committed) are read again from the restored state and raise
    the same alerts, same ids, again.

    A record whose handling fails (a sink still refused it after retries, say) is dead-lettered
    with the exception as its reason, by reference, and the rest of the batch is still counted:
    Faust acknowledges the whole batch whatever happens, so an exception escaping here would
    lose all of it. The failed record had already changed the counts and episodes in memory, so
    they are rebuilt from the tables and the batch's earlier records replayed (without sending
    again): memory then holds what a restart would restore. Failures are rare; a rebuild costs
    a read of the tables.
    """
    rows: dict[int, Row] = {}
    stats = state.processor.stats.copy()
    failed: dict[int, str] = {}  # index in the batch -> the reason its dead letter counts under
    for i, record in enumerate(batch):
        try:
            await _count_one(state, sinks, record, rows)
        except Exception as exc:
            if not isinstance(exc, _HalfApplied):
                msg = record.message
                log.exception("could not handle %s[%d]@%d; dead-lettered", msg.topic,
                              msg.partition, msg.offset)  # fmt: skip
                reasons = dead_letter_headers(msg.topic, msg.partition, msg.offset, exc)
                reasons.append((DLQ_VALUE_BYTES_HEADER, str(len(msg.value or b"")).encode()))
                await _send(sinks.dead_letter, key=msg.key, value=b"", headers=reasons)
            failed[i] = "internal" if isinstance(exc, _HalfApplied) else "handling-failed"
            rows = await _replayed(state, sinks, [r for j, r in enumerate(batch[:i])
                                                  if j not in failed], stats)  # fmt: skip
            state.processor.stats.processed += len(failed)
            for reason in failed.values():
                state.processor.stats.dead_letter(reason)
    for row in rows.values():
        with _as_current(row.first):
            msg = row.first.message
            key = f"{msg.topic}:{msg.partition}:{msg.offset}"
            sinks.events[key] = row.value()
        # [event id, event type, region, occurred_ms, accounts, late, source]: see Counted
        state.rows.note(key, ((e[6], e[3]) for e in row.events))
    for partition, row in rows.items():
        _compact_if_due(state, sinks, partition, row.first)
    _observe_latency(state.latency, batch)


def _observe_latency(latency: Buckets, batch: Sequence[Any]) -> None:
    """One sample per record: its timestamp (publish time) to now, the batch handled."""
    now = time.time()
    observe = latency.observe
    for record in batch:
        stamp = record.message.timestamp
        if stamp:
            observe(max(0.0, now - stamp))


def _compact_if_due(state: WorkerState, sinks: _Sinks, partition: int, record: Any) -> None:
    """Fold a partition's rows older than the dedupe horizon into its summary, once a day.

    Once per day of stream time (and once after each recovery) per partition: a scan of the
    table, in memory. The deleted rows then leave the changelog at its next compaction, so a
    restart reads the horizon's rows, not the whole history.
    """
    processor = state.processor
    horizon = processor.dedupe_horizon_ms
    if horizon is None:
        return
    store = processor.store
    cuts = {
        source: mark - horizon
        for source in {s for s in store.sources().values() if s.endswith(f":{partition}")}
        if (mark := store.watermark(source)) is not None
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
    state: WorkerState, sinks: _Sinks, records: Sequence[Any], stats: Stats
) -> dict[int, Row]:
    """The state from the tables, then ``records`` counted again without sending anything."""
    restore_state(state, sinks.events.items, sinks.episodes.items())
    state.processor.stats = stats.copy()
    rows: dict[int, Row] = {}
    for record in records:
        await _count_one(state, sinks, record, rows, send=False)
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


async def _count_one(
    state: WorkerState, sinks: _Sinks, record: Any, rows: dict[int, Row], *, send: bool = True
) -> None:
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
    changes = processor.engine.take_changes()
    if outcome.dead_letter is not None:
        dl = outcome.dead_letter
        if send:
            await _send(sinks.dead_letter, key=dl.key, value=dl.value or b"", headers=dl.headers)
        if outcome.internal_error:
            raise _HalfApplied
    elif send:
        for alert in outcome.alerts:
            await _send(
                sinks.alerts,
                key=alert_key(alert),
                value=encode_alert(alert),
                headers=alert_headers(alert),
            )
    # Only once every send is acknowledged: a record that fails leaves no trace in the rows.
    if changes or outcome.counted is not None:
        row = rows.get(msg.partition)
        if row is None:
            row = rows[msg.partition] = Row(record)
        for fp, episode in changes:
            row.episodes[fp] = [msg.offset, episode]
    row = rows.get(msg.partition)
    if row is not None:
        row.offsets[f"{msg.topic}:{msg.partition}"] = msg.offset
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


def run_worker(
    settings: Settings, loglevel: str = "warning", log_format: LogFormat = "text"
) -> None:
    """Run a worker in this process until SIGTERM or Ctrl-C, then shut down cleanly.

    Logs go to stderr at ``loglevel``, as text or JSON lines (``log_format``), with the known
    benign start-up messages of aiokafka and Faust downgraded to DEBUG until the worker has
    started (:mod:`disruptfeed._logging`); Faust does not replace that logging set-up.

    Raises:
        ConfigurationError: a non-loopback DISRUPTFEED_WORKER_HOST without
            DISRUPTFEED_API_TOKEN (:func:`disruptfeed.auth.check_bind`), before anything starts.
    """
    configure_logging(loglevel, log_format, startup=None)  # until on_startup_finished
    check_bind(settings.worker_host, settings, "DISRUPTFEED_WORKER_HOST")
    cluster = asyncio.run(cluster_id(settings))
    if settings.worker_store.startswith("rocksdb"):
        app_id = f"{settings.topic_prefix}-worker"
        asyncio.run(discard_stale_state(settings, state_dir(settings, cluster), app_id))
    use_uvloop()
    app = create_app(settings, cluster)
    log.info("worker state in %s", state_dir(settings, cluster))
    worker = _Worker(app, loglevel=loglevel, redirect_stdouts=False, override_logging=False)
    # Faust's terminal spinner turns the root logger to DEBUG so that it spins on every record:
    # building a debug record per sent message cost ~8% of the worker's time (py-spy).
    worker.spinner = None
    worker.execute_from_commandline()


class _Worker(faust.Worker):
    """Faust's worker, telling the start-up log filter when the start is over."""

    async def on_startup_finished(self) -> None:
        await super().on_startup_finished()
        startup_finished()
