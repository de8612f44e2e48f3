"""What the agent, the web views and the metrics share inside one worker process."""

from __future__ import annotations

__all__ = ["WorkerState", "worker_state"]

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import faust
from prometheus_client import CollectorRegistry

from disruptfeed._metrics import Buckets, LagMonitor
from disruptfeed.settings import Settings
from streams._holes import Fill
from streams._processor import Processor
from streams._rows import RowIndex


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
    starts: dict[str, int] = field(default_factory=dict)
    """Source -> the offset its reading started from after the last rebalance's seek."""
    fill: Fill | None = None
    """Reads the records of a source partition's hole (streams._holes); None: holes are kept."""


def worker_state(app: faust.App) -> WorkerState:
    """The shared state of an app built by :func:`create_app`."""
    state: WorkerState = getattr(app, "feed_state")  # noqa: B009
    return state
