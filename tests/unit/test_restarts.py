"""A worker restarted at any point raises exactly the alerts of one that never stopped.

A restart keeps only what the worker's tables hold: the counted facts of the events and every
episode as of the last finished batch. The records after the last commit are read again; the
ones already counted are duplicates. Without a broker, with the default rules over the sample:
the processor alone, then the worker's own batch code killed after a random number of writes.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from aiokafka.partitioner import murmur2

from disruptfeed.sample import build_sample
from disruptfeed.settings import Settings
from schemas import Alert, EventBase, codec
from streams import Counted, Processor

pytestmark = pytest.mark.unit

PARTITIONS = 3
SETTINGS = Settings(topic_prefix="t", worker_store="memory://", dedupe_horizon_days=3650)
"""Ten years: every event of the sample's 2.7 years is told apart from duplicates."""
SHORT = SETTINGS.model_copy(update={"dedupe_horizon_days": 30})
"""The default: the later passes are too old, and the tables are compacted as time goes."""


def _record(event: EventBase) -> tuple[str, int, bytes, bytes, list[tuple[str, bytes]]]:
    topic = SETTINGS.topic(event.type.replace(".", "-"))
    partition = (murmur2(event.region.encode()) & 0x7FFFFFFF) % PARTITIONS
    return topic, partition, event.region.encode(), codec.encode(event), codec.headers(event)


class _Run:
    """One worker's life: a processor, its seen ids, and what its tables would hold."""

    def __init__(self, settings: Settings = SETTINGS) -> None:
        self.settings = settings
        self.processor = Processor.for_settings(settings)
        self.seen: set[int] = set()
        self.facts: list[Counted] = []
        self.alerts: list[Alert] = []

    def feed(self, records: list[Any]) -> None:
        for offset, (topic, partition, key, value, headers) in records:
            out = self.processor.process(
                topic, partition, offset, key, value, headers, self.seen.__contains__
            )
            # Eleven passes over 2.7 years: later passes are mostly too old to deduplicate.
            assert out.dead_letter is None or dict(out.dead_letter.headers)[
                "dlq_reason"
            ].startswith(b"beyond-dedupe-horizon")
            self.alerts += out.alerts
            if out.counted is not None and out.event is not None:
                self.seen.add(out.event.event_id.int)
                self.facts.append(out.counted)

    def restarted(self) -> _Run:
        """A new worker on this one's tables."""
        new = _Run(self.settings)
        new.alerts = self.alerts
        new.facts = list(self.facts)
        new.seen = set(self.seen)
        new.processor.store.restore(self.facts)
        new.processor.engine.restore(self.processor.engine.state())
        new.processor.rebuilt()
        return new


def _shuffled(records: list[Any], rng: random.Random) -> list[Any]:
    """The records as a consumer may read them: each partition in its order, merged at random."""
    logs: dict[tuple[str, int], list[Any]] = {}
    for record in records:
        logs.setdefault(record[1][:2], []).append(record)
    heads = {key: 0 for key in logs}
    out = []
    while heads:
        key = rng.choice(sorted(heads))
        out.append(logs[key][heads[key]])
        heads[key] += 1
        if heads[key] == len(logs[key]):
            del heads[key]
    return out


def _transitions(alerts: list[Alert]) -> set[Any]:
    return {a.alert_id for a in alerts}


def test_restarts_anywhere_raise_the_alerts_of_one_pass() -> None:
    sample = build_sample()
    # Published as the kill-loop test does: eleven interleaved passes over the history.
    records = list(enumerate(_record(e) for i in range(11) for e in sample[i::11]))
    one_pass = _Run()
    one_pass.feed(records)
    expected = _transitions(one_pass.alerts)
    assert len({a.alert_id for a in one_pass.alerts if a.repeat == 0}) > 40

    rng = random.Random(7)
    for trial in range(40):
        kills = sorted(rng.sample(range(1, len(records)), 10))
        run, at = _Run(), 0
        records = _shuffled(records, rng)
        for kill in kills:
            run.feed(records[at:kill])
            run = run.restarted()
            # The last commit was somewhere before the kill: those records come again.
            at = max(0, kill - rng.randrange(0, 200))
        run.feed(records[at:])
        got = _transitions(run.alerts)
        assert (expected - got, got - expected) == (set(), set()), f"trial {trial}: {kills}"
        assert run.processor.store.snapshot() == one_pass.processor.store.snapshot()


class _Killed(BaseException):
    """The SIGKILL: nothing after it happens (a BaseException, so no handler catches it)."""


class _Budget:
    """How many more writes the process makes before it is killed."""

    def __init__(self, writes: int) -> None:
        self.left = writes

    def spend(self) -> None:
        if self.left == 0:
            raise _Killed
        self.left -= 1


class _Table(dict[str, Any]):
    """A table whose writes survive the kill that stops them (the changelog keeps them)."""

    budget = _Budget(-1)

    def __setitem__(self, key: str, value: Any) -> None:
        self.budget.spend()
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.budget.spend()
        super().__delitem__(key)


class _Topic:
    def __init__(self, budget: _Budget) -> None:
        self.budget = budget
        self.sent: list[bytes] = []

    async def send(self, *, key: Any, value: bytes, headers: Any) -> Any:
        self.budget.spend()
        self.sent.append(value)
        return _Acked()


class _Acked:
    def __await__(self) -> Any:
        return iter(())


class _Record:
    def __init__(self, offset: int, record: tuple[str, int, bytes, bytes, Any]) -> None:
        topic, partition, key, value, headers = record
        self.message: Any = type("Message", (), {
            "topic": topic, "partition": partition, "offset": offset, "key": key,
            "value": value, "headers": headers, "timestamp": None,
        })  # fmt: skip


@pytest.mark.parametrize(("settings", "at_least"), [(SETTINGS, 40), (SHORT, 10)])
async def test_a_worker_killed_at_any_write_publishes_the_alerts_of_one_pass(
    settings: Settings, at_least: int
) -> None:
    """The real batch code, killed after a random number of writes, ten times over."""
    from schemas import decode_alert
    from streams._batch import Sinks, count_batch, restore_state
    from streams.app import WorkerState

    sample = build_sample()
    records = [_Record(o, _record(e)) for o, e in enumerate(x for i in range(11)
                                                            for x in sample[i::11])]  # fmt: skip
    one_pass = _Run(settings)
    one_pass.feed([(r.message.offset, _record_of(r)) for r in records])
    expected = {a.alert_id for a in one_pass.alerts}
    assert len({a.alert_id for a in one_pass.alerts if a.repeat == 0}) > at_least

    rng = random.Random(3)
    for trial in range(15):
        events, episodes = _Table(), _Table()
        alerts = _Topic(_Budget(-1))
        position, committed = 0, 0
        for life in range(11):
            budget = _Budget(-1 if life == 10 else rng.randrange(1, 120))
            events.budget = episodes.budget = alerts.budget = budget
            state = WorkerState(settings, Processor.for_settings(settings))
            restore_state(state, events.items, episodes.items())
            position = committed  # the records after the last commit come again
            try:
                while position < len(records):
                    batch = records[position : position + 50]
                    sinks = Sinks(events, episodes, _Topic(_Budget(-1)), alerts)
                    await count_batch(state, sinks, batch)
                    position += len(batch)
                    if rng.random() < 0.5:
                        committed = position
            except _Killed:
                continue
            break
        got = {decode_alert(v).alert_id for v in alerts.sent}
        assert (expected - got, got - expected) == (set(), set()), f"trial {trial}"
        assert state.processor.store.snapshot() == one_pass.processor.store.snapshot()
        # A last restart from the (compacted) tables restores the same counts.
        state = WorkerState(settings, Processor.for_settings(settings))
        restore_state(state, events.items, episodes.items())
        assert state.processor.store.snapshot() == one_pass.processor.store.snapshot()
    if settings.dedupe_horizon_days < 1_000:
        # The history is 2.7 years: most batch rows were folded into the summaries.
        summaries = [k for k in events if k.startswith("summary:")]
        assert len(summaries) == PARTITIONS
        assert len(events) < 50, len(events)


def _record_of(record: _Record) -> tuple[str, int, bytes, bytes, Any]:
    m = record.message
    return m.topic, m.partition, m.key, m.value, m.headers


def _per_source(events: list[EventBase]) -> list[_Record]:
    """Records with Kafka's offsets: consecutive within each source partition."""
    next_offset: dict[tuple[str, int], int] = {}
    out = []
    for event in events:
        record = _record(event)
        offset = next_offset.get(record[:2], 0)
        next_offset[record[:2]] = offset + 1
        out.append(_Record(offset, record))
    return out


async def test_records_faust_never_delivers_are_read_and_counted_in_order() -> None:
    """Faust can hand the agent a source partition with a hole in it: after a rebalance it
    resumes the partitions before it seeks them, and records fetched in between were dropped
    while its read position moved past them (issue 13: 50 records of a partition taken over
    were never counted). The worker knows the last offset its rows hold per source; a record
    beyond the next one means a hole, whose records are read and counted before it."""
    from streams._batch import Sinks, count_batch
    from streams.app import WorkerState

    records = _per_source(build_sample())
    source = (records[0].message.topic, records[0].message.partition)
    mine = [r for r in records if (r.message.topic, r.message.partition) == source][:40]
    one_pass = _Run(SETTINGS)
    one_pass.feed([(r.message.offset, _record_of(r)) for r in mine])
    asked: list[tuple[str, int, int, int]] = []

    async def fill(topic: str, partition: int, start: int, end: int) -> list[_Record]:
        asked.append((topic, partition, start, end))
        return mine[start:end]

    state = WorkerState(SETTINGS, Processor.for_settings(SETTINGS), fill=fill)
    sinks = Sinks(_Table(), _Table(), _Topic(_Budget(-1)), _Topic(_Budget(-1)))
    await count_batch(state, sinks, mine[:10])
    await count_batch(state, sinks, [mine[10], *mine[20:30]])  # 11..19 dropped by Faust
    assert asked == [(*source, 11, 20)]
    await count_batch(state, sinks, mine[25:])  # Faust reads some again: duplicates
    assert state.processor.store.snapshot() == one_pass.processor.store.snapshot()
    assert asked == [(*source, 11, 20)]
    assert state.processor.stats.duplicates == 5


async def test_records_no_longer_on_the_log_are_passed_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A hole the log itself has (records deleted by retention while no worker read them, a
    transaction's markers) reads as nothing: the worker counts what follows and says so."""
    from streams._batch import Sinks, count_batch
    from streams.app import WorkerState

    records = _per_source(build_sample())
    source = (records[0].message.topic, records[0].message.partition)
    mine = [r for r in records if (r.message.topic, r.message.partition) == source][:20]

    async def fill(topic: str, partition: int, start: int, end: int) -> list[_Record]:
        return []

    state = WorkerState(SETTINGS, Processor.for_settings(SETTINGS), fill=fill)
    sinks = Sinks(_Table(), _Table(), _Topic(_Budget(-1)), _Topic(_Budget(-1)))
    await count_batch(state, sinks, mine[:5])
    await count_batch(state, sinks, mine[8:])
    assert state.processor.stats.counted == 5 + len(mine[8:])
    assert "3 of the records 5..7" in caplog.text


async def test_a_hole_before_anything_counted_is_measured_from_where_reading_started() -> None:
    """No row holds a source yet (a partition nobody counted): its first records can be the
    dropped ones, so a hole is measured from where the rebalance's seek started reading."""
    from streams._holes import fill_holes

    records = _per_source(build_sample())
    source = (records[0].message.topic, records[0].message.partition)
    mine = [r for r in records if (r.message.topic, r.message.partition) == source][:20]
    asked: list[tuple[int, int]] = []

    async def fill(topic: str, partition: int, start: int, end: int) -> list[_Record]:
        asked.append((start, end))
        return mine[start:end]

    name = f"{source[0]}:{source[1]}"
    got = await fill_holes({}, fill, mine[9:], starts={name: 5})
    assert asked == [(5, 9)]
    assert [r.message.offset for r in got] == list(range(5, 20))
    assert await fill_holes({}, fill, mine[9:]) == mine[9:]  # no position known: no hole
