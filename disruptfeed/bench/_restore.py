"""worker-restore: how long a worker takes to start on a long history, and the memory it holds.

The history is :func:`~disruptfeed.bench._events.history_chunks` (a million events span about a
year of event time at the bench's mean gap). One worker counts all of it and stops (SIGTERM);
then the case times two starts on the same feed:

- **restart**: the same state directory, so Faust reads its RocksDB tables and only the
  changelog's tail; the worker then rebuilds its counts and ids from the tables
  (``on_recover``). This is the figure reported.
- **rebuild**: an empty state directory, as on a new machine: the whole ``events`` changelog is
  read back first.

The worker runs a rule that never fires: with the shipped rules a year of random events
raises tens of thousands of alerts, each acknowledged before its record counts, and the
counting pass would measure the alerts topic, not the restore.

Each is timed from the process launch to the first healthy ``/health`` (joined the group, state
rebuilt), and its resident memory is read from ``/proc`` right then and after a second look at
``/health`` (``VmRSS``; ``VmHWM`` for the peak of the start-up).
"""

from __future__ import annotations

__all__ = ["restore_figures"]

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from disruptfeed.bench import _clients as clients
from disruptfeed.bench._errors import BenchError
from disruptfeed.bench._events import history_chunks
from disruptfeed.bench._latency import alert_rules
from disruptfeed.bench._worker import BenchWorker
from disruptfeed.settings import Settings
from disruptfeed.topics import EVENT_TOPICS


def _rss_mb(worker: BenchWorker, field: str) -> float:
    status = Path(f"/proc/{worker.pid}/status").read_text(encoding="utf-8")
    for line in status.splitlines():
        if line.startswith(f"{field}:"):
            return round(int(line.split()[1]) / 1024, 1)  # kB
    raise BenchError(f"no {field} line in /proc/<pid>/status (Linux only)")


def _timed_start(
    settings: Settings, state: Path, rules: Path, total: int, timeout: float
) -> dict[str, Any]:
    worker = BenchWorker(settings, state, rules)
    started = time.perf_counter()
    worker.start()
    try:
        ended, health = worker.wait_for(lambda h: True, "the restored worker's health", timeout)
        if health["restored_events"] > total:
            raise BenchError(f"{health['restored_events']} events restored of {total} published")
        return {
            "seconds": round(ended - started, 2),
            "restored_events": health["restored_events"],
            "rss_mb": _rss_mb(worker, "VmRSS"),
            "peak_rss_mb": _rss_mb(worker, "VmHWM"),
        }
    finally:
        worker.stop()


def restore_figures(
    settings: Settings, total: int, scratch: Path, lib: Path, say: Callable[[str], None]
) -> tuple[float, dict[str, Any]]:
    """Publish ``total`` events of history, count them once, then time two worker starts.

    Returns:
        The restart's seconds, and the detail (both starts, the counting pass).
    """
    say(f"  publishing {total:,} events of history ...")
    published = 0
    for chunk in history_chunks(total):
        clients.confluent_produce(settings, chunk)
        published += len(chunk)
    timeout = max(600.0, total / 500)
    state = scratch / "worker"
    rules = scratch / "rules.toml"
    rules.write_text(alert_rules(10**9), encoding="utf-8")
    with BenchWorker(settings, state, rules) as worker:
        say("  counting them ...")
        started = time.perf_counter()
        _, counted = worker.wait_for(
            lambda h: h["counted"] + h["dead_lettered"] >= published, "the history", timeout
        )
        counting_s = time.perf_counter() - started
        counted_rss = _rss_mb(worker, "VmRSS")
    sources = [settings.topic(name) for name in EVENT_TOPICS]
    changelog = f"{settings.topic_prefix}-worker-events-changelog"
    disk = clients.log_dir_bytes(lib, settings, [*sources, changelog], scratch)
    if counted["dead_lettered"]:
        # Beyond the dedupe horizon of a fresh partition is impossible: the history is in order.
        raise BenchError(f"{counted['dead_lettered']} history events were dead-lettered")
    say("  restart on its own state ...")
    restart = _timed_start(settings, state, rules, published, timeout)
    say("  rebuild from the changelog on an empty state directory ...")
    rebuild = _timed_start(settings, scratch / "fresh-worker", rules, published, timeout)
    detail = {
        "events": published,
        "counting": {"seconds": round(counting_s, 1), "rss_mb": counted_rss},
        "restart": restart,
        "rebuild": rebuild,
        "state_bytes": sum(f.stat().st_size for f in state.rglob("*") if f.is_file()),
        # On the brokers' disks, lz4 as the producer sent it; the changelog before compaction.
        "topic_bytes_per_event": round(sum(disk[t] for t in sources) / published, 1),
        "changelog_bytes_per_event": round(disk[changelog] / published, 1),
    }
    return float(restart["seconds"]), detail
