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

What a batch does is in :mod:`streams._batch`; the state the agent and the views share is
:class:`streams._worker_state.WorkerState`.
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
from pathlib import Path
from typing import Any

import faust

from disruptfeed._http import application_options
from disruptfeed._logging import LogFormat, configure_logging, startup_finished
from disruptfeed._loop import use_uvloop
from disruptfeed._metrics import LagMonitor, new_registry
from disruptfeed.auth import check_bind
from disruptfeed.settings import Settings, get_settings
from disruptfeed.topics import ALERTS, DEAD_LETTER, cluster_id, event_types_by_topic
from streams._batch import Sinks, count_batch, restore_state
from streams._credentials import broker_credentials
from streams._dashboard import register_dashboard
from streams._faust import apply_fixes
from streams._metrics import register_metrics_views, worker_collectors
from streams._processor import Processor
from streams._rows import foreign_rows
from streams._state import discard_stale_state
from streams._views import register_views
from streams._worker_state import WorkerState, worker_state

log = logging.getLogger(__name__)


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
        producer_linger=settings.worker_linger_ms / 1000,
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
    # Records Faust dropped for good around a rebalance are read directly: streams._holes.
    state.fill = apply_fixes(app, set(topic_types), settings.client_kwargs(), state.starts)

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

    sinks = Sinks(events, episodes, dead_letter, alerts)

    @app.agent(source, concurrency=1)
    async def count_events(stream: Any) -> None:
        wait = settings.batch_wait_ms / 1000
        async for batch in stream.take_events(settings.batch_size, within=wait):
            await count_batch(state, sinks, batch)

    state.agent = count_events
    state.registry = new_registry(worker_collectors(state))
    register_views(app, state)
    register_dashboard(app, settings, tokens)
    register_metrics_views(app, state)
    return app


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
