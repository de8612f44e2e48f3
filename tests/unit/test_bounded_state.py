"""What the worker keeps stays bounded by the dedupe horizon, not by the history."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest

from disruptfeed.settings import Settings
from schemas import codec
from streams import Counted, Processor
from streams._rows import compact, read_rows
from streams._seen import DAY_MS, SeenIds
from tests.factories import account

pytestmark = pytest.mark.unit

SRC = "t.account-disrupted:0"


def test_ids_are_forgotten_a_whole_day_at_a_time_past_the_horizon() -> None:
    seen = SeenIds()
    for day in range(10):
        seen.add(day, SRC, day * DAY_MS + 5)
    assert seen.evict_before(SRC, 4 * DAY_MS + 1) == 4  # days 0-3 end before the horizon
    assert sorted(seen) == [4, 5, 6, 7, 8, 9]
    assert not seen.seen(3, SRC, 3 * DAY_MS + 5)
    assert seen.seen(4, SRC, 4 * DAY_MS + 5)
    seen.add(1, SRC, DAY_MS)  # an evicted day takes no more ids
    assert len(seen) == 6


def _feed(proc: Processor, days: float, offset: int) -> Any:
    event = account("RU", minutes=days * 24 * 60)
    return proc.process(
        "t.account-disrupted", 0, offset, b"RU", codec.encode(event), codec.headers(event)
    ), event


def test_an_event_older_than_the_horizon_is_dead_lettered_never_counted_twice() -> None:
    proc = Processor.for_settings(Settings(topic_prefix="t", dedupe_horizon_days=30))
    first, old = _feed(proc, 0, 0)
    assert first.counted is not None
    for i in range(1, 41):  # forty days go by on the partition
        _feed(proc, i, i)
    again = proc.process("t.account-disrupted", 0, 99, b"RU", codec.encode(old), codec.headers(old))
    assert again.dead_letter is not None
    reason = dict(again.dead_letter.headers)["dlq_reason"]
    assert reason.startswith(b"beyond-dedupe-horizon: ")
    assert b"DISRUPTFEED_DEDUPE_HORIZON_DAYS" in reason
    assert proc.store.snapshot()["RU"]["account.disrupted"]["total"] == 41
    assert len(proc.seen) <= 31  # ids of the horizon's days only


def test_compaction_keeps_totals_and_episodes_and_is_safe_to_repeat() -> None:
    def fact(day: int, n: int, source: str = SRC) -> list[Any]:
        counted = Counted("account.disrupted", "RU", day * DAY_MS, 2, False, source)
        return [str(UUID(int=n)), *counted]

    episode = {"rule": "r"}
    rows: dict[str, Any] = {
        "t.account-disrupted:0:0": {
            "events": [fact(1, 1), fact(2, 2)],
            "episodes": {"fp": [1, episode]},
        },
        "t.account-disrupted:0:2": {"events": [fact(3, 3), fact(9, 4)], "episodes": {}},
        "t.account-disrupted:0:4": {"events": [fact(10, 5)], "episodes": {}},
        "t.account-disrupted:1:0": {"events": [fact(1, 6, f"{SRC[:-1]}1")], "episodes": {}},
    }

    def restored(rows: dict[str, Any]) -> tuple[list[Counted], Any]:
        state = read_rows(rows.items)
        return list(state.facts), state

    facts, before = restored(rows)
    assert len(facts) == 6
    assert len(before.index) == 4
    plan = compact(0, before.index, rows, {SRC: 5 * DAY_MS})
    assert plan.deleted == ["t.account-disrupted:0:0"]  # the mixed row stays
    assert plan.absorbed == 3
    rows["summary:0"] = plan.summary
    killed = restored(rows)  # killed before the deletes: nothing counted twice
    for key in plan.deleted:
        del rows[key]
    for facts, state in (killed, restored(rows)):
        kept = sorted(f.occurred_ms // DAY_MS for f in facts)
        assert kept == [1, 9, 10]  # partition 1's day 1; partition 0 from its cut on
        assert state.totals == [(SRC, "RU", "account.disrupted", 3, 6, 0)]
        assert state.episodes == {"fp": (1, episode)}
    # The row left behind by the kill is still indexed, so the next compaction deletes it.
    assert "t.account-disrupted:0:0" in killed[1].index.rows(0)
    # Compacting again with the same cut absorbs nothing more.
    again = compact(0, restored(rows)[1].index, rows, {SRC: 5 * DAY_MS})
    assert (again.absorbed, again.deleted, again.summary) == (0, [], plan.summary)


def test_rows_of_partitions_owned_elsewhere_are_told_apart() -> None:
    from streams._rows import foreign_rows

    keys = ["t.a:0:5", "t.a:1:7", "summary:1", "summary:0", str(UUID(int=1)), 42]
    assert foreign_rows(keys, active={0}) == ["t.a:1:7", "summary:1"]


def test_a_record_read_again_after_a_takeover_is_skipped_not_dead_lettered() -> None:
    """The takeover test found it: replayed records beyond the horizon were dead-lettered."""
    proc = Processor.for_settings(Settings(topic_prefix="t", dedupe_horizon_days=30))
    _, old = _feed(proc, 0, 0)
    for i in range(1, 41):
        _feed(proc, i, i)
    fresh = Processor.for_settings(Settings(topic_prefix="t", dedupe_horizon_days=30))
    fresh.store = proc.store  # as restored: the counts, and the tables' last offset
    fresh.replayed = {SRC: 40}
    again = fresh.process("t.account-disrupted", 0, 0, b"RU", codec.encode(old), codec.headers(old))
    assert (again.duplicate, again.dead_letter) == (True, None)
    assert fresh.stats.duplicates == 1


def test_a_record_delivered_again_in_the_same_process_is_skipped_not_dead_lettered() -> None:
    """Faust re-delivers from the committed offset after a rebalance's seek, past records it had
    already handed over (the takeover test: twelve counted events dead-lettered on re-delivery)."""
    proc = Processor.for_settings(Settings(topic_prefix="t", dedupe_horizon_days=30))
    _, old = _feed(proc, 0, 0)
    for i in range(1, 41):
        _feed(proc, i, i)
    again = proc.process("t.account-disrupted", 0, 0, b"RU", codec.encode(old), codec.headers(old))
    assert (again.duplicate, again.dead_letter) == (True, None)
    assert proc.store.snapshot()["RU"]["account.disrupted"]["total"] == 41
    later = proc.process("t.account-disrupted", 0, 41, b"RU", codec.encode(old), codec.headers(old))
    assert later.dead_letter is not None  # a new record with an old event is still refused


class _Message:
    def __init__(self, partition: int) -> None:
        self.topic, self.partition, self.offset = "t.account-disrupted", partition, 0


class _Event:
    def __init__(self, partition: int) -> None:
        self.message = _Message(partition)


class _PartitionedTable(dict[str, Any]):
    """Reads as Faust's RocksDB store does while an event is current: in that event's
    partition only (faust.stores.rocksdb.Store._get), so a key of another partition is None."""

    def __init__(self, rows: dict[str, Any]) -> None:
        super().__init__(rows)

    def get(self, key: str, default: Any = None) -> Any:
        from faust.streams import current_event

        event = current_event()
        partition = 0 if key == "summary:0" else int(key.rsplit(":", 2)[1])
        if event is not None and event.message.partition != partition:
            return default
        return super().get(key, default)


def test_compaction_reads_its_own_partition_whatever_record_is_current() -> None:
    """Compaction reads its own partition's summary and rows whatever event is current: Faust's
    RocksDB store looks a key up in the current event's partition only, so read under a record
    of another partition it found nothing and skipped that day's compaction."""
    from streams._batch import Sinks, compact_if_due
    from streams._faust import as_current
    from streams.app import WorkerState

    settings = Settings(topic_prefix="t", dedupe_horizon_days=15)
    state = WorkerState(settings, Processor.for_settings(settings))
    summary = {"cuts": {SRC: 1 * DAY_MS}, "totals": [[SRC, "RU", "account.disrupted", 50, 100, 0]],
               "episodes": {}, "offsets": {SRC: 49}}  # fmt: skip
    facts = [
        [str(UUID(int=n)), *Counted("account.disrupted", "RU", day * DAY_MS, 2, False, SRC)]
        for n, day in ((1, 2), (2, 40))
    ]
    rows = {"summary:0": summary, "t.account-disrupted:0:50": {"events": facts, "episodes": {}}}
    restored = read_rows(rows.items)
    state.processor.store.restore(restored.facts)
    state.rows = restored.index
    table = _PartitionedTable(rows)
    sinks = Sinks(table, {}, None, None)
    with as_current(_Event(1)):  # the batch's last record was on partition 1
        compact_if_due(state, sinks, 0, _Event(0))
    assert table["summary:0"]["totals"] == [[SRC, "RU", "account.disrupted", 51, 102, 0]]
