"""The rows of the worker's ``events`` table: what a batch writes, what a restart reads back.

Two kinds of row, both JSON, both written to the changelog partition of their source partition:

- a batch row, key ``topic:partition:offset`` of its first record, value ``{"events": [[event
  id, *counted facts], ...], "episodes": {fingerprint: [offset, episode or None]}}``: the events
  one batch counted on one partition and the alert episodes they changed (with the source offset
  of the record that last changed each). One row is one changelog record, so a kill keeps both
  or neither, and restored episodes always match restored counts. (Episodes written to a table
  of their own, after each alert, could survive a kill that the events of their batch did not;
  re-read, those events started the episode again, and the feed published a transition the
  history does not have.)
- a summary row, key ``summary:partition``, value ``{"cuts": {source: ms}, "totals": [[region,
  event type, total, accounts, late], ...], "episodes": {...}}``: everything of the events older
  than each source's cut that the counts still need (all-time totals, the latest episodes), so
  that their batch rows can be deleted (:func:`compact`). The cut is the dedupe horizon behind
  the source's stream time: events older are refused, so nothing is ever added below it.

And an offsets row, key ``offsets:partition``, value ``{"offsets": {source: offset}}``: the
last offsets of a batch that counted nothing on that partition (duplicates, dead letters), so
that a restart knows them handled.

A summary is written before the rows it absorbs are deleted; a restart between the two finds
rows with events below the cut and skips those events, which the summary already holds.
"""

from __future__ import annotations

__all__ = [
    "OFFSETS",
    "SUMMARY",
    "Compaction",
    "Restored",
    "Row",
    "RowIndex",
    "compact",
    "foreign_rows",
    "read_rows",
]

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from streams._seen import SeenIds
from streams._windows import Counted

SUMMARY = "summary:"
OFFSETS = "offsets:"
Episodes = dict[str, tuple[int, dict[str, Any] | None]]


class Row:
    """What one batch writes for one source partition (see the module docstring)."""

    __slots__ = ("episodes", "events", "first", "offsets")

    def __init__(self, first: Any) -> None:
        self.first = first
        self.events: list[list[Any]] = []
        self.episodes: dict[str, list[Any]] = {}
        self.offsets: dict[str, int] = {}
        """Source -> the last offset of this batch whose effects the row holds."""

    def value(self) -> dict[str, Any]:
        return {"events": self.events, "episodes": self.episodes, "offsets": self.offsets}


class RowIndex:
    """Per partition, each batch row's event-time range per source: what compaction looks at.

    With it a compaction reads only the rows that have events below a cut, not the whole table.
    """

    __slots__ = ("_rows",)

    def __init__(self) -> None:
        self._rows: dict[int, dict[str, dict[str, list[int]]]] = {}

    def note(self, key: str, times: Iterable[tuple[str, int]]) -> None:
        """Record the batch row ``key`` (``topic:partition:offset``): its (source, event time)s."""
        spans: dict[str, list[int]] = {}
        for source, t in times:
            span = spans.get(source)
            if span is None:
                spans[source] = [t, t]
            elif t < span[0]:
                span[0] = t
            elif t > span[1]:
                span[1] = t
        if spans:
            self._rows.setdefault(_partition(key), {})[key] = spans

    def forget(self, key: str) -> None:
        self._rows.get(_partition(key), {}).pop(key, None)

    def rows(self, partition: int) -> dict[str, dict[str, list[int]]]:
        """Row key -> source -> [earliest, latest] event time, of one partition."""
        return self._rows.get(partition, {})

    def __len__(self) -> int:
        return sum(len(rows) for rows in self._rows.values())


def _partition(key: str) -> int:
    return int(key.rsplit(":", 2)[1])


def foreign_rows(keys: Iterable[Any], active: Collection[int]) -> list[str]:
    """The keys of rows (batch or summary) that belong to partitions not in ``active``.

    Faust's memory store keeps, after a rebalance, the rows this worker wrote itself for
    partitions it no longer owns (it drops only those it read back from the changelog); they
    must not be counted here, nor deleted from the changelog, which another worker now owns.
    """
    out = []
    for key in keys:
        if not isinstance(key, str):
            continue
        if key.startswith(SUMMARY):
            partition = key[len(SUMMARY) :]
        elif key.startswith(OFFSETS):
            partition = key[len(OFFSETS) :]
        elif key.count(":") >= 2:
            partition = key.rsplit(":", 2)[1]
        else:
            continue  # a row of the first release, keyed by event id: no partition to tell
        if partition.isdigit() and int(partition) not in active:
            out.append(key)
    return out


@dataclass(slots=True)
class Restored:
    """What a worker's tables say it had counted.

    ``facts`` is read lazily, row by row (holding every decoded row at once cost more memory
    than the counts themselves); ``seen``, ``episodes`` and ``index`` are complete once it has
    been consumed.
    """

    facts: Iterator[Counted]
    seen: SeenIds = field(default_factory=SeenIds)
    episodes: Episodes = field(default_factory=dict)
    index: RowIndex = field(default_factory=RowIndex)
    totals: list[tuple[str, str, str, int, int, int]] = field(default_factory=list)
    """(source, region, event type, total, accounts, late) of events summarised away."""
    replayed: dict[str, int] = field(default_factory=dict)
    """Source -> the last offset whose effects the rows hold: records up to it are skipped."""


def _offsets(into: dict[str, int], offsets: dict[str, int]) -> None:
    for source, offset in offsets.items():
        if offset > into.get(source, -1):
            into[source] = offset


def _merge(into: Episodes, changes: dict[str, Any]) -> None:
    for fp, (offset, episode) in changes.items():
        if offset >= into.get(fp, (-1, None))[0]:
            into[fp] = (offset, episode)


def read_rows(items: Callable[[], Iterable[tuple[Any, Any]]]) -> Restored:
    """Everything the rows of an ``events`` table hold, of every release's row shapes.

    ``items`` gives the table's rows afresh on each call: summaries are read first, then the
    batch rows one at a time, as ``facts`` is consumed.
    """
    cuts: dict[str, int] = {}
    out = Restored(iter(()))
    for key, value in items():
        if isinstance(key, str) and key.startswith(SUMMARY) and isinstance(value, dict):
            cuts.update(value["cuts"])
            out.totals.extend(tuple(t) for t in value["totals"])
            _merge(out.episodes, value["episodes"])
            _offsets(out.replayed, value.get("offsets", {}))
    out.facts = _facts(items(), cuts, out)
    return out


def _facts(
    rows: Iterable[tuple[Any, Any]], cuts: dict[str, int], out: Restored
) -> Iterator[Counted]:
    floor = -(2**62)
    for key, value in rows:
        if isinstance(key, str) and key.startswith(SUMMARY):
            continue
        events = value
        if isinstance(value, dict):
            _merge(out.episodes, value.get("episodes", {}))
            _offsets(out.replayed, value.get("offsets", {}))
            events = value.get("events")
        if events and isinstance(events[0], list):
            every = [Counted(*facts) for _, *facts in events]
            if isinstance(value, dict):
                # All of them: a row left below its cut (killed before its delete) is deleted
                # by the next compaction.
                out.index.note(key, ((c.source, c.occurred_ms) for c in every))
            for (event_id, *_), counted in zip(events, every, strict=True):
                if counted.occurred_ms < cuts.get(counted.source, floor):
                    continue  # in the summary already
                out.seen.add(UUID(event_id).int, counted.source, counted.occurred_ms)
                yield counted
        elif events:  # a row of the first release: key = event id, value = its facts
            counted = Counted(*events)
            out.seen.add(UUID(key).int, counted.source, counted.occurred_ms)
            yield counted


@dataclass(slots=True)
class Compaction:
    """What to write for one partition: its new summary, and the batch rows it replaces."""

    summary: dict[str, Any]
    deleted: list[str]
    absorbed: int


def compact(
    partition: int, index: RowIndex, table: Mapping[str, Any], cuts: dict[str, int]
) -> Compaction:
    """Fold the events of ``partition`` older than each source's cut into its summary.

    ``cuts`` maps each source (``topic:partition``) of this partition to its new cut. Only the
    rows ``index`` shows with events below a cut are read from ``table``. A batch row all of
    whose events are below their cuts is deleted; a row with newer events stays, and its older
    events are skipped on restore.
    """
    old: dict[str, Any] = table.get(f"{SUMMARY}{partition}") or {
        "cuts": {},
        "totals": [],
        "episodes": {},
    }
    prev: dict[str, int] = old["cuts"]
    new_cuts = {s: max(c, prev.get(s, c)) for s, c in cuts.items()}
    floor = -(2**62)
    totals: dict[tuple[str, str, str], list[int]] = {}
    for source, region, event_type, *nums in old["totals"]:
        totals[(source, region, event_type)] = list(nums)
    episodes: Episodes = {fp: (o, e) for fp, (o, e) in old["episodes"].items()}
    offsets: dict[str, int] = dict(old.get("offsets", {}))
    deleted: list[str] = []
    absorbed = 0
    for key, spans in list(index.rows(partition).items()):
        if not any(lo < new_cuts.get(src, floor) for src, (lo, _) in spans.items()):
            continue  # nothing below a cut: not even read
        value = table.get(key)
        events = value.get("events", []) if isinstance(value, dict) else []
        for _, *facts in events:
            counted = Counted(*facts)
            if (
                not prev.get(counted.source, floor)
                <= counted.occurred_ms
                < new_cuts.get(counted.source, floor)
            ):
                continue  # above the cut, or absorbed by an earlier summary
            series = (counted.source, counted.region, counted.event_type)
            sums = totals.setdefault(series, [0, 0, 0])
            sums[0] += 1
            sums[1] += counted.accounts
            sums[2] += counted.late
            absorbed += 1
        if isinstance(value, dict) and all(
            hi < new_cuts.get(src, floor) for src, (_, hi) in spans.items()
        ):
            _merge(episodes, value.get("episodes", {}))
            _offsets(offsets, value.get("offsets", {}))
            deleted.append(key)
    summary = {
        "cuts": {**prev, **new_cuts},
        "totals": [[*key, *nums] for key, nums in sorted(totals.items())],
        "episodes": {fp: [o, e] for fp, (o, e) in sorted(episodes.items())},
        "offsets": dict(sorted(offsets.items())),
    }
    return Compaction(summary, deleted, absorbed)
