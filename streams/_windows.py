"""Exact rolling counts in event time, kept in memory and rebuilt from the event table.

Faust's own windowed tables are not used (see shared notes: ``relative_to_now`` is broken in agents,
hopping ``value()`` reads one step, expiry follows the wall clock). Instead each counted event is
one record in a plain table (the dedupe table), and this module keeps, per region and event type,
the sorted event times of the last ``retain`` seconds plus all-time totals. Rolling windows are
then two binary searches: exact to the millisecond, whatever the arrival order.

Account sums over a window are differences of running totals (``_Series.cum``, 8 bytes per
retained event), so ``/stats`` reads a fixed number of values per series however many events are
retained. Summing the retained accounts on each request paused the worker's event loop for
11-14 ms at a million retained events; now the request's worst pause is 3-5 ms, the same as
``/counts`` (``python -m tests.view_lag``). An event inserted before the newest one of its series
(out of order, within grace) leaves the totals after it to be recomputed at the next read: only
the events newer than it.

Stream time is event time. Each source topic-partition has a watermark: the latest ``occurred_at``
among its counted, on-time events. An event more than ``grace`` older than its partition's
watermark is *late*: it counts in the totals and in ``late``, but not in windows. Because a
partition's order is fixed in its log, the watermark, and so every late decision, is the same on
every run over the same history, including after a crash and recovery.
"""

from __future__ import annotations

__all__ = ["WINDOWS", "CountStore", "Counted", "WindowName"]

import bisect
import itertools
from array import array
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Literal, NamedTuple

WindowName = Literal["1h", "24h", "7d"]
WINDOWS: Final[dict[WindowName, int]] = {"1h": 3_600_000, "24h": 86_400_000, "7d": 604_800_000}
"""Rolling windows, in milliseconds of event time."""


class Counted(NamedTuple):
    """What the event table keeps for one counted event (its value, as a JSON array)."""

    event_type: str
    region: str
    occurred_ms: int
    accounts: int
    late: bool
    source: str
    """The source topic-partition, ``"topic:partition"``: whose watermark this event moved."""


def _totals() -> array[int]:
    return array("q")


@dataclass(slots=True)
class _Series:
    times: list[int] = field(default_factory=list)
    accounts: list[int] = field(default_factory=list)
    cum: array[int] = field(default_factory=_totals)
    """Running totals of ``accounts``: ``cum[i] - cum[j]`` is the sum of ``accounts[j+1:i+1]``."""
    settled: int = 0
    """How many leading entries of ``cum`` are right; the rest are recomputed when read."""
    total: int = 0
    total_accounts: int = 0
    late: int = 0
    source: str = ""
    """The topic-partition this series' events come from (one region, one type: one source)."""


class CountStore:
    """Rolling and all-time counts per (region, event type).

    Args:
        grace_ms: how far behind its partition's watermark an event may be and still land in
            windows.
        retain_ms: how much event time to keep per series; at least the longest window plus any
            rule's baseline.
    """

    def __init__(self, *, grace_ms: int, retain_ms: int = 2 * WINDOWS["7d"]) -> None:
        if grace_ms < 0:
            raise ValueError("grace must not be negative")
        self.grace_ms = grace_ms
        self.retain_ms = max(retain_ms, WINDOWS["7d"])
        self._series: defaultdict[tuple[str, str], _Series] = defaultdict(_Series)
        self._watermarks: dict[str, int] = {}
        self._added_since_prune = 0

    # --- writing -----------------------------------------------------------------------------
    def classify(self, source: str, occurred_ms: int) -> bool:
        """True when an event from ``source`` at ``occurred_ms`` would be late now."""
        mark = self._watermarks.get(source)
        return mark is not None and occurred_ms < mark - self.grace_ms

    def add(self, counted: Counted) -> None:
        """Count one event whose lateness was already decided (see :meth:`classify`)."""
        series = self._series[(counted.region, counted.event_type)]
        series.total += 1
        series.total_accounts += counted.accounts
        if counted.late:
            series.late += 1
            return
        if counted.occurred_ms > self._watermarks.get(counted.source, -(2**62)):
            self._watermarks[counted.source] = counted.occurred_ms
        series.source = counted.source
        # Trim by the series' own partition's stream time, never a faster partition's: what a
        # series keeps must not depend on the order partitions are read in.
        if counted.occurred_ms >= self._watermarks[counted.source] - self.retain_ms:
            at = bisect.bisect_right(series.times, counted.occurred_ms)
            if at == len(series.times) == series.settled:  # in order: one more running total
                series.cum.append((series.cum[-1] if at else 0) + counted.accounts)
                series.settled += 1
            else:
                series.cum.insert(at, 0)
                series.settled = min(series.settled, at)
            series.times.insert(at, counted.occurred_ms)
            series.accounts.insert(at, counted.accounts)
        self._added_since_prune += 1
        if self._added_since_prune >= 10_000:
            self.prune()

    def restore(self, records: Iterable[Counted]) -> int:
        """Rebuild from the event table after recovery; returns how many events were restored."""
        count = 0
        for counted in records:
            self.add(counted)
            count += 1
        self.prune()  # rows come in key order, not stream order
        for series in self._series.values():
            _settle(series)  # now, rather than in the first query after a restart
        return count

    def add_totals(
        self, source: str, region: str, event_type: str, total: int, accounts: int, late: int
    ) -> None:
        """Add all-time totals of events no longer kept one by one (older than any window)."""
        series = self._series[(region, event_type)]
        series.total += total
        series.total_accounts += accounts
        series.late += late
        series.source = series.source or source

    def prune(self) -> None:
        """Drop event times older than the retention from the rolling series."""
        self._added_since_prune = 0
        for series in self._series.values():
            mark = self._watermarks.get(series.source)
            if mark is None:
                continue
            cut = bisect.bisect_left(series.times, mark - self.retain_ms)
            if cut:
                del series.times[:cut]
                del series.accounts[:cut]
                del series.cum[:cut]
                series.settled = max(0, series.settled - cut)

    # --- reading -----------------------------------------------------------------------------
    @property
    def now_ms(self) -> int:
        """Stream time: the latest watermark of any source partition (0 before any event)."""
        return max(self._watermarks.values(), default=0)

    def watermark(self, source: str) -> int | None:
        """The watermark of one source topic-partition."""
        return self._watermarks.get(source)

    def count(self, region: str, event_type: str, size_ms: int, now_ms: int | None = None) -> int:
        """Events in ``(now - size, now]`` for one region and type."""
        series = self._series.get((region, event_type))
        if series is None:
            return 0
        now = self.now_ms if now_ms is None else now_ms
        times = series.times
        return bisect.bisect_right(times, now) - bisect.bisect_right(times, now - size_ms)

    def accounts(
        self, region: str, event_type: str, size_ms: int, now_ms: int | None = None
    ) -> int:
        """Sum of ``accounts`` in ``(now - size, now]`` for one region and type."""
        series = self._series.get((region, event_type))
        if series is None:
            return 0
        now = self.now_ms if now_ms is None else now_ms
        lo = bisect.bisect_right(series.times, now - size_ms)
        hi = bisect.bisect_right(series.times, now)
        if hi <= lo:
            return 0
        _settle(series)
        cum = series.cum
        before = cum[lo - 1] if lo else cum[0] - series.accounts[0]
        return cum[hi - 1] - before

    def _series_now(self, series: _Series) -> int:
        # A series of late events only has no partition of its own: the latest stream time.
        return self._watermarks.get(series.source, self.now_ms)

    def sources(self) -> dict[tuple[str, str], str]:
        """(region, event type) -> the topic-partition its events come from ('' if only late)."""
        return {key: series.source for key, series in self._series.items()}

    def watermarks_on(self, partition: int) -> dict[str, int]:
        """Source -> watermark, of the sources of one partition (``topic:partition``)."""
        suffix = f":{partition}"
        return {src: mark for src, mark in self._watermarks.items() if src.endswith(suffix)}

    def regions(self) -> list[str]:
        """Every region with at least one counted event, sorted."""
        return sorted({region for region, _ in self._series})

    def snapshot(
        self, region: str | None = None, now_ms: int | None = None
    ) -> dict[str, dict[str, dict[str, int]]]:
        """``region -> event type -> {"1h", "24h", "7d", "total"}``.

        The windows end at ``now_ms`` if given, else at each series' own stream time: the
        watermark of the partition its events come from, the "now" the alert rules read it at,
        so a region's counts and its alerts agree however far other partitions are ahead.
        ``total`` is every event counted so far, whatever ``now_ms``.
        """
        out: dict[str, dict[str, dict[str, int]]] = {}
        for (reg, event_type), series in sorted(self._series.items()):
            if region is not None and reg != region:
                continue
            now = self._series_now(series) if now_ms is None else now_ms
            row: dict[str, int] = {
                name: self.count(reg, event_type, size, now) for name, size in WINDOWS.items()
            }
            row["total"] = series.total
            out.setdefault(reg, {})[event_type] = row
        return out

    def detail(self, region: str | None = None) -> dict[str, dict[str, dict[str, object]]]:
        """Like :meth:`snapshot`, plus late events and account sums per window."""
        out: dict[str, dict[str, dict[str, object]]] = {}
        for reg, types in self.snapshot(region).items():
            for event_type, row in types.items():
                series = self._series[(reg, event_type)]
                now = self._series_now(series)
                accounts: dict[str, int] = {
                    n: self.accounts(reg, event_type, s, now) for n, s in WINDOWS.items()
                }
                accounts["total"] = series.total_accounts
                out.setdefault(reg, {})[event_type] = {
                    **row,
                    "late": series.late,
                    "accounts": accounts,
                }
        return out


def _settle(series: _Series) -> None:
    """Recompute the running totals after the last right one (after out-of-order inserts)."""
    done = series.settled
    if done == len(series.accounts):
        return
    start = series.cum[done - 1] if done else 0
    totals = itertools.accumulate(itertools.islice(series.accounts, done, None), initial=start)
    series.cum[done:] = array("q", itertools.islice(totals, 1, None))
    series.settled = len(series.accounts)
