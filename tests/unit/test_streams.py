"""Counting, lateness and per-record processing, without a broker."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from disruptfeed.settings import Settings
from schemas import codec, decode_alert
from streams import Counted, CountStore, Processor
from streams._engine import AlertEngine
from streams._rules import RuleSet
from tests.factories import T0, account, network, report

pytestmark = pytest.mark.unit

H = 3_600_000
SRC = "t.account-disrupted:0"


def _counted(
    minutes: float, *, late: bool = False, region: str = "RU", source: str = SRC
) -> Counted:
    ms = int(T0.timestamp() * 1000 + minutes * 60_000)
    return Counted("account.disrupted", region, ms, 2, late, source)


def test_windows_are_exact_at_their_edges() -> None:
    store = CountStore(grace_ms=H)
    for minutes in (0, 30, 60, 61, 60 * 24, 60 * 24 * 7 + 61):
        store.add(_counted(minutes))
    now = store.now_ms  # the newest event: 7 days and 61 minutes after the first
    assert store.count("RU", "account.disrupted", H) == 1
    assert now == _ms(10_141)
    # Windows are (now - size, now]: 24h starts after minute 8,701, so only the newest event;
    # 7d starts after minute 61 exactly, so minute 61 is out and minute 1,440 is in.
    assert store.count("RU", "account.disrupted", 86_400_000) == 1
    assert store.count("RU", "account.disrupted", 7 * 86_400_000) == 2
    # A minute earlier, minute 61 is in the 7d window and the newest event is not.
    assert store.count("RU", "account.disrupted", 7 * 86_400_000, now_ms=_ms(10_140)) == 2
    assert store.count("RU", "account.disrupted", H, now_ms=_ms(10_140)) == 0
    # (0, 1440]: minute 0 is out.
    assert store.count("RU", "account.disrupted", 86_400_000, now_ms=_ms(1_440)) == 4
    assert store.snapshot()["RU"]["account.disrupted"]["total"] == 6


def _ms(minutes: float) -> int:
    return int(T0.timestamp() * 1000 + minutes * 60_000)


def test_lateness_follows_the_partition_watermark() -> None:
    store = CountStore(grace_ms=H)
    store.add(_counted(600))
    assert not store.classify(SRC, _ms(600 - 59))  # within grace: lands in its window
    assert store.classify(SRC, _ms(600 - 61))  # beyond grace: late
    # Another partition's watermark is its own.
    assert not store.classify("t.account-disrupted:1", _ms(0))
    store.add(_counted(0, late=True))
    detail = store.detail()["RU"]["account.disrupted"]
    assert detail["late"] == 1
    assert detail["total"] == 2
    assert detail["1h"] == 1
    assert detail["accounts"] == {"1h": 2, "24h": 2, "7d": 2, "total": 4}


def test_the_watermarks_of_one_partition_are_its_sources_only() -> None:
    store = CountStore(grace_ms=H)
    store.add(_counted(600))
    store.add(_counted(30, region="IR", source="t.account-disrupted:10"))
    store.add(_counted(5, region="CN", source="t.network-identified:1"))
    store.add_totals("t.report-released:0", "FR", "report.released", 3, 3, 0)  # no watermark
    assert store.watermarks_on(0) == {SRC: _ms(600)}
    assert store.watermarks_on(1) == {"t.network-identified:1": _ms(5)}
    assert store.watermarks_on(10) == {"t.account-disrupted:10": _ms(30)}
    assert store.watermarks_on(2) == {}


def test_restore_is_independent_of_row_order() -> None:
    rng = random.Random(1)
    # A region's events travel on one partition (its key's), so each series has one source.
    regions = [rng.choice(["RU", "CN"]) for _ in range(2_000)]
    rows = [
        _counted(rng.uniform(0, 60 * 24 * 30), region=r, source=f"s:{int(r == 'CN')}")
        for r in regions
    ]
    a = CountStore(grace_ms=H, retain_ms=8 * 24 * H)
    b = CountStore(grace_ms=H, retain_ms=8 * 24 * H)
    a.restore(rows)
    b.restore(list(reversed(rows)))
    assert a.snapshot() == b.snapshot()
    assert a.detail() == b.detail()


def test_pruning_keeps_windows_exact() -> None:
    store = CountStore(grace_ms=H, retain_ms=7 * 24 * H)
    for day in range(40):
        store.add(_counted(day * 24 * 60))
    store.prune()
    row = store.snapshot()["RU"]["account.disrupted"]
    assert row == {"1h": 1, "24h": 1, "7d": 7, "total": 40}


def _processor(grace_ms: int = H) -> Processor:
    settings = Settings(topic_prefix="t")
    topics = {
        settings.topic(n): t
        for n, t in [
            ("account-disrupted", "account.disrupted"),
            ("network-identified", "network.identified"),
            ("report-released", "report.released"),
        ]
    }
    return Processor(CountStore(grace_ms=grace_ms), AlertEngine(RuleSet(rules=())), topics)


def test_processor_counts_once_and_dead_letters_with_position() -> None:
    proc = _processor()
    seen: set[int] = set()

    def run(topic: str, value: bytes | None, offset: int) -> object:
        outcome = proc.process(topic, 2, offset, b"RU", value, [], seen.__contains__)
        if outcome.counted is not None and outcome.event is not None:
            seen.add(outcome.event.event_id.int)
        return outcome

    event = account("RU")
    first = run("t.account-disrupted", codec.encode(event), 0)
    again = run("t.account-disrupted", codec.encode(event), 1)
    assert first.counted is not None  # type: ignore[attr-defined]
    assert again.duplicate  # type: ignore[attr-defined]
    bad = run("t.account-disrupted", b'{"type": "account.disrupted"', 7)
    headers = dict(bad.dead_letter.headers)  # type: ignore[attr-defined]
    assert headers["dlq_topic"] == b"t.account-disrupted"
    assert headers["dlq_partition"] == b"2"
    assert headers["dlq_offset"] == b"7"
    assert headers["dlq_error_type"] == b"DecodeError"
    assert b"EOF while parsing" in headers["dlq_reason"]
    wrong = run("t.account-disrupted", codec.encode(report()), 8)
    wrong_headers = dict(wrong.dead_letter.headers)  # type: ignore[attr-defined]
    assert wrong_headers["dlq_field"] == b"type"
    assert b"does not belong on topic" in wrong_headers["dlq_reason"]
    ok = run("t.network-identified", codec.encode(network("CN")), 9)
    assert ok.counted is not None  # type: ignore[attr-defined]
    assert proc.stats.counted == 2
    assert proc.stats.duplicates == 1
    assert proc.stats.dead_lettered == 2
    assert proc.store.snapshot()["RU"]["account.disrupted"]["total"] == 1


def test_an_event_time_far_ahead_of_its_publish_time_is_dead_lettered() -> None:
    proc = _processor()
    proc.max_future_ms = 300_000
    published_ms = int(T0.timestamp() * 1000)

    def run(event: object, offset: int) -> Any:
        return proc.process(
            "t.account-disrupted", 0, offset, b"RU", codec.encode(event), [],  # type: ignore[arg-type]
            lambda _: False, timestamp_ms=published_ms,
        )  # fmt: skip

    assert run(account("RU"), 0).counted is not None
    assert run(account("RU", minutes=4), 1).counted is not None  # within the 5 min skew
    far = account("RU", occurred_at=dt.datetime(9999, 1, 1, tzinfo=dt.UTC))
    headers = dict(run(far, 2).dead_letter.headers)
    assert headers["dlq_reason"].startswith(b"future-event-time: ")
    assert headers["dlq_field"] == b"occurred_at"
    assert headers["dlq_error_type"] == b"FutureEventTimeError"
    assert run(account("RU", minutes=6), 3).dead_letter is not None  # a clock 6 min ahead
    # Stream time never moved: the windows still end at the last accepted event.
    assert proc.store.now_ms == _ms(4)
    assert proc.store.count("RU", "account.disrupted", H) == 2
    # A record far in the past is still counted (as late), not dead-lettered.
    old = run(account("RU", minutes=-60 * 24 * 30), 4)
    assert old.counted is not None
    assert old.counted.late


def test_a_dead_letter_too_big_to_copy_keeps_a_reference_instead() -> None:
    proc = _processor()
    poison = b"x" * 1_000_000  # a new user's mistake: a megabyte of non-JSON on an event topic
    outcome = proc.process("t.account-disrupted", 1, 42, b"RU", poison, [], lambda _: False)
    dead = outcome.dead_letter
    assert dead is not None
    assert dead.value is None
    headers = dict(dead.headers)
    assert headers["dlq_value_bytes"] == b"1000000"
    assert (headers["dlq_topic"], headers["dlq_partition"], headers["dlq_offset"]) == (
        b"t.account-disrupted", b"1", b"42",
    )  # fmt: skip
    assert b"the limit is" in headers["dlq_reason"]
    small = proc.process("t.account-disrupted", 1, 43, b"RU", b"{", [], lambda _: False)
    assert small.dead_letter is not None
    assert small.dead_letter.value == b"{"
    assert "dlq_value_bytes" not in dict(small.dead_letter.headers)


def _threshold_processor(region: str, threshold: int) -> Processor:
    """A processor on 't.account-disrupted' with one rule: ``threshold`` in 1h for ``region``."""
    from streams._rules import ThresholdRule

    rule = ThresholdRule(
        name=f"{region.lower()}-1h", event_type="account.disrupted", window="1h",
        threshold=threshold, regions=(region,), severity="critical",
    )  # fmt: skip
    topics = {Settings(topic_prefix="t").topic("account-disrupted"): "account.disrupted"}
    return Processor(CountStore(grace_ms=H), AlertEngine(RuleSet(rules=(rule,))), topics)


def test_restored_firing_episodes_still_resolve_after_a_restart() -> None:
    def fresh() -> Processor:
        return _threshold_processor("RU", 2)

    def feed(proc: Processor, region: str, minutes: int, offset: int) -> Any:
        value = codec.encode(account(region, minutes=minutes))
        return proc.process("t.account-disrupted", 0, offset, region.encode(), value, [],
                            lambda _: False)  # fmt: skip

    first = fresh()
    stored = [feed(first, "RU", minutes, i) for i, minutes in enumerate((0, 10))]
    assert [(a.region, a.status) for a in stored[1].alerts] == [("RU", "firing")]

    # A restart: the counts and the episodes come back from the tables, nothing else.
    second = fresh()
    second.store.restore([o.counted for o in stored])
    second.engine.restore(first.engine.state())
    second.rebuilt()
    # Three hours later on the same partition, another region's event moves stream time on.
    later = feed(second, "CN", 190, 2)
    assert [(a.region, a.status) for a in later.alerts] == [("RU", "resolved")]


def test_processor_survives_its_own_bugs(monkeypatch: pytest.MonkeyPatch) -> None:
    proc = _processor()

    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("a bug, not bad input")

    monkeypatch.setattr(proc.store, "add", broken)
    outcome = proc.process(
        "t.account-disrupted", 0, 3, b"RU", codec.encode(account()), [], lambda _: False
    )
    assert outcome.dead_letter is not None
    headers = dict(outcome.dead_letter.headers)
    assert headers["dlq_error_type"] == b"ZeroDivisionError"
    assert headers["dlq_offset"] == b"3"


async def test_agent_counts_with_test_context() -> None:
    from streams.app import create_app, worker_state

    app = create_app(
        Settings(bootstrap_servers="127.0.0.1:9", worker_store="memory://", topic_prefix="unit")
    )
    state = worker_state(app)
    late_event = account("CN", minutes=-24 * 60)
    events = [account("RU"), account("RU", minutes=1), account("CN", minutes=2)]
    try:
        async with state.agent.test_context() as agent:
            for event in [*events, events[0], late_event]:
                await agent.put(
                    codec.encode(event),
                    key=event.region.encode(),
                    partition=0,
                    headers=codec.headers(event),
                )
    finally:
        # test_context builds the app's consumer (and its thread's event loop) without starting
        # it; Faust only closes that loop on stop, so close it here.
        app.consumer._thread.thread_loop.close()  # type: ignore[attr-defined]
    assert state.processor.stats.counted == 4
    assert state.processor.stats.duplicates == 1
    assert state.processor.stats.late == 1
    # One table row per partition per batch, holding each counted event's id and facts.
    table: Any = app.tables["events"]
    rows = dict(table.items())
    stored = [fact for row in rows.values() for fact in row["events"]]
    assert sorted(f[0] for f in stored) == sorted(str(e.event_id) for e in [*events, late_event])
    # Keyed topic:partition:offset of the row's first event (test_context's topic is internal).
    assert {key.rsplit(":", 2)[1] for key in rows} == {"0"}
    assert set(state.processor.seen) == {UUID(f[0]).int for f in stored}
    snapshot = state.processor.store.snapshot()
    assert snapshot["RU"]["account.disrupted"] == {"1h": 2, "24h": 2, "7d": 2, "total": 2}
    assert snapshot["CN"]["account.disrupted"] == {"1h": 1, "24h": 1, "7d": 1, "total": 2}


def test_counted_facts_round_trip_as_json() -> None:
    counted = _counted(5)
    import orjson

    assert Counted(*orjson.loads(orjson.dumps(list(counted)))) == counted


def test_app_creates_a_missing_data_dir(tmp_path: Path) -> None:
    from streams.app import create_app

    data = tmp_path / "does" / "not" / "exist"
    app = create_app(Settings(data_dir=data, worker_store="memory://", topic_prefix="unit"), "c1")
    assert (data / "worker" / "c1" / "unit-worker").is_dir()
    assert app.conf.id == "unit-worker"


def test_stored_rows_rebuild_counts_and_ids_in_every_row_shape() -> None:
    from streams._rows import read_rows

    old, new = _counted(1), _counted(2)
    a, b, c = (UUID(int=n) for n in (1, 2, 3))
    rows = [
        ("t.account-disrupted:0:30", {"events": [[str(c), *new]], "episodes": {}}),
        ("t.account-disrupted:0:17", [[str(b), *new]]),  # the second release: events only
        (str(a), list(old)),  # the first release stored one row per event, keyed by its id
        ("t.account-disrupted:1:3", None),
    ]
    restored = read_rows(lambda: rows)
    assert list(restored.facts) == [new, new, old]
    assert set(restored.seen) == {1, 2, 3}


class _Sent:
    def __await__(self) -> Any:
        return iter(())


class _Topic:
    """A sink topic that refuses its first ``fail`` sends with ``error``."""

    def __init__(self, fail: int = 0, error: Exception | None = None) -> None:
        self.fail, self.error = fail, error or RuntimeError("the broker said no")
        self.sent: list[tuple[Any, Any, dict[str, bytes]]] = []

    async def send(self, *, key: Any, value: Any, headers: Any) -> _Sent:
        if self.fail:
            self.fail -= 1
            raise self.error
        self.sent.append((key, value, dict(headers)))
        return _Sent()


class _Record:
    def __init__(self, event: Any, offset: int) -> None:
        self.message = type("Message", (), {
            "topic": "t.account-disrupted", "partition": 0, "offset": offset,
            "key": event.region.encode(), "value": codec.encode(event), "headers": [],
            "timestamp": None,
        })  # fmt: skip


async def test_a_record_whose_alert_cannot_be_sent_is_dead_lettered_and_the_batch_goes_on() -> None:
    from streams._batch import Sinks, count_batch
    from streams.app import WorkerState

    state = WorkerState(Settings(topic_prefix="t"), _threshold_processor("NG", 1))

    dead, alerts = _Topic(), _Topic(fail=99)
    events: dict[str, Any] = {}
    episodes: dict[str, Any] = {}
    batch = [_Record(account("RU"), 0), _Record(account("NG"), 1), _Record(account("CN"), 2)]
    await count_batch(state, Sinks(events, episodes, dead, alerts), batch)

    [(key, value, headers)] = dead.sent  # the NG record, whose alert could not be sent
    assert key == b"NG"
    assert value == b""
    assert headers["dlq_offset"] == b"1"
    assert b"RuntimeError" in headers["dlq_error_type"]
    assert b"the broker said no" in headers["dlq_reason"]
    [row] = events.values()  # one row for the partition, holding the other two events
    assert sorted(facts[2] for facts in row["events"]) == ["CN", "RU"]
    # Nothing of the NG record stays behind: not in the row, not in memory.
    assert row["episodes"] == {}
    assert set(state.processor.store.snapshot()) == {"CN", "RU"}
    assert state.processor.engine.active() == []
    assert set(state.processor.seen) == {UUID(facts[0]).int for facts in row["events"]}
    assert (state.processor.stats.counted, state.processor.stats.dead_lettered) == (2, 1)


def _state_with_a_bug_for(region: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A worker's state whose alert engine raises, after the count, on ``region``'s events."""
    from streams.app import WorkerState

    state = WorkerState(Settings(topic_prefix="t"), _threshold_processor(region, 1))
    engine = state.processor.engine
    real = engine.on_event

    def broken(event: Any, *args: Any, **kwargs: Any) -> Any:
        if event.region == region:
            raise ZeroDivisionError("a bug after the count")
        return real(event, *args, **kwargs)

    monkeypatch.setattr(engine, "on_event", broken)
    return state


async def test_a_bug_half_way_through_a_record_leaves_no_trace_of_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from streams._batch import Sinks, count_batch

    state = _state_with_a_bug_for("NG", monkeypatch)
    dead, alerts = _Topic(), _Topic()
    events: dict[str, Any] = {}
    batch = [_Record(account("RU"), 0), _Record(account("NG"), 1), _Record(account("CN"), 2)]
    await count_batch(state, Sinks(events, {}, dead, alerts), batch)

    [(key, _, headers)] = dead.sent
    assert (key, headers["dlq_error_type"]) == (b"NG", b"ZeroDivisionError")
    [row] = events.values()
    assert sorted(facts[2] for facts in row["events"]) == ["CN", "RU"]
    # The bug struck after NG was counted: that count is undone, in memory as in the row.
    assert set(state.processor.store.snapshot()) == {"CN", "RU"}


async def test_a_retriable_send_error_is_retried_not_dead_lettered() -> None:
    from aiokafka.errors import NotLeaderForPartitionError

    from streams._batch import Sinks, count_batch
    from streams.app import WorkerState

    state = WorkerState(Settings(topic_prefix="t"), _threshold_processor("NG", 1))
    dead, alerts = _Topic(), _Topic(fail=2, error=NotLeaderForPartitionError())
    events: dict[str, Any] = {}
    await count_batch(state, Sinks(events, {}, dead, alerts), [_Record(account("NG"), 0)])
    assert dead.sent == []
    [(_, value, _)] = alerts.sent
    assert decode_alert(value).region == "NG"
    [row] = events.values()
    [(offset, episode)] = row["episodes"].values()
    assert offset == 0
    assert episode["labels"]["region"] == "NG"


def test_counts_and_alerts_agree_when_partitions_are_at_different_stream_times() -> None:
    proc = _threshold_processor("RU", 2)

    def feed(region: str, partition: int, minutes: int, offset: int) -> Any:
        value = codec.encode(account(region, minutes=minutes))
        return proc.process("t.account-disrupted", partition, offset, region.encode(), value,
                            [], lambda _: False)  # fmt: skip

    fired = [feed("RU", 0, minutes, i) for i, minutes in enumerate((0, 10))]
    assert [a.status for a in fired[1].alerts] == ["firing"]
    feed("CN", 1, 600, 0)  # partition 1 is ten hours ahead
    # RU's alert still fires at its partition's stream time, and /counts says why.
    assert [a.region for a in proc.engine.active()] == ["RU"]
    snapshot = proc.store.snapshot()
    assert snapshot["RU"]["account.disrupted"]["1h"] == 2
    assert snapshot["CN"]["account.disrupted"]["1h"] == 1
    accounts = proc.store.detail()["RU"]["account.disrupted"]["accounts"]
    assert isinstance(accounts, dict)
    assert accounts["1h"] == 6
    # An explicit time still ends every window then.
    assert proc.store.snapshot(now_ms=_ms(600))["RU"]["account.disrupted"]["1h"] == 0


def test_hostile_record_framing_is_dead_lettered_with_its_reason() -> None:
    """Headers, content type and key are input too: each bad one gets its own reason."""
    proc = _processor()
    event = account()
    value, good = codec.encode(event), codec.headers(event)

    def run(key: bytes | None, headers: list[tuple[str, bytes]], offset: int) -> dict[str, bytes]:
        outcome = proc.process("t.account-disrupted", 0, offset, key, value, headers,
                               lambda _: False)  # fmt: skip
        assert outcome.dead_letter is not None, (key, headers)
        assert outcome.counted is None
        return dict(outcome.dead_letter.headers)

    xml = [(k, b"application/xml") if k == "content-type" else (k, v) for k, v in good]
    dead = run(b"RU", xml, 1)
    assert dead["dlq_field"] == b"content-type"
    assert b"application/xml" in dead["dlq_reason"]
    assert b"application/json" in dead["dlq_reason"]
    # A header that is not UTF-8, or repeated with another value, is no event's id.
    dead = run(b"RU", [*good, ("ce_id", b"\xff\xfe")], 2)
    assert dead["dlq_field"] == b"ce_id"
    # A huge key: named and refused, and left out of the dead letter (the value still fits).
    huge = run(b"k" * 900_000, good, 3)
    assert huge["dlq_field"] == b"key"
    assert b"900000 bytes" in huge["dlq_reason"]
    outcome = proc.process("t.account-disrupted", 0, 4, b"k" * 900_000, value, good,
                           lambda _: False)  # fmt: skip
    assert outcome.dead_letter is not None
    assert outcome.dead_letter.key is None
    assert outcome.dead_letter.value == value
    # Parameters of a JSON content type are fine, and so is no content type at all.
    charset = [(k, b"application/json; charset=utf-8") if k == "content-type" else (k, v)
               for k, v in good]  # fmt: skip
    assert proc.process("t.account-disrupted", 0, 5, b"RU", value, charset,
                        lambda _: False).counted is not None  # fmt: skip


class _RawRecord:
    def __init__(self, value: bytes, offset: int) -> None:
        self.message = type("Message", (), {
            "topic": "t.account-disrupted", "partition": 0, "offset": offset, "key": b"RU",
            "value": value, "headers": [], "timestamp": None,
        })  # fmt: skip


class _AckTopic:
    """A sink whose sends are acknowledged later: all at once when ``gate`` has ``total`` sends,
    or at once; the first ``fail`` acknowledgements fail with a non-retriable error."""

    def __init__(
        self, gate: list[asyncio.Future[None]] | None = None, total: int = 0, fail: int = 0
    ) -> None:
        self.gate, self.total, self.fail = gate, total, fail
        self.sent: list[tuple[Any, Any, dict[str, bytes]]] = []

    async def send(self, *, key: Any, value: Any, headers: Any) -> asyncio.Future[None]:
        self.sent.append((key, value, dict(headers)))
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.fail:
            self.fail -= 1
            ack.set_exception(RuntimeError("the broker said no, late"))
        elif self.gate is None:
            ack.set_result(None)
        else:
            self.gate.append(ack)
            if len(self.gate) == self.total:
                for waiting in self.gate:
                    waiting.set_result(None)
        return ack


async def test_a_batch_sends_its_dead_letters_and_alerts_before_awaiting_any() -> None:
    """One acknowledgement at a time capped a stream of bad records at a few hundred a second
    (a linger and a round trip each): the whole batch's sends must be in flight together."""
    from streams._batch import Sinks, count_batch
    from streams.app import WorkerState

    state = WorkerState(Settings(topic_prefix="t"), _threshold_processor("NG", 1))
    gate: list[asyncio.Future[None]] = []
    dead, alerts = _AckTopic(gate, total=6), _AckTopic(gate, total=6)
    events: dict[str, Any] = {}
    batch: list[Any] = [_RawRecord(b"{", n) for n in range(5)]
    batch.append(_Record(account("NG"), 5))
    # Awaiting each acknowledgement before the next send never reaches the sixth send.
    await asyncio.wait_for(count_batch(state, Sinks(events, {}, dead, alerts), batch), 10)
    assert [h["dlq_offset"] for _, _, h in dead.sent] == [str(n).encode() for n in range(5)]
    assert [decode_alert(v).region for _, v, _ in alerts.sent] == ["NG"]
    row = events["t.account-disrupted:0:5"]  # keyed by its first counted record
    assert [facts[2] for facts in row["events"]] == ["NG"]
    assert set(row["episodes"]) == {a.fingerprint for a in state.processor.engine.active()}


async def test_an_alert_refused_after_it_was_sent_dead_letters_its_record_only() -> None:
    from streams._batch import Sinks, count_batch
    from streams.app import WorkerState

    state = WorkerState(Settings(topic_prefix="t"), _threshold_processor("NG", 1))
    dead, alerts = _AckTopic(), _AckTopic(fail=99)
    events: dict[str, Any] = {}
    batch = [_Record(account("RU"), 0), _Record(account("NG"), 1), _Record(account("CN"), 2)]
    await count_batch(state, Sinks(events, {}, dead, alerts), batch)

    [(key, value, headers)] = dead.sent
    assert (key, value, headers["dlq_offset"]) == (b"NG", b"", b"1")
    [row] = events.values()
    assert sorted(facts[2] for facts in row["events"]) == ["CN", "RU"]
    assert row["episodes"] == {}
    assert set(state.processor.store.snapshot()) == {"CN", "RU"}
    assert state.processor.engine.active() == []
    assert (state.processor.stats.counted, state.processor.stats.dead_lettered) == (2, 1)


async def test_a_refused_dead_letter_of_a_worker_bug_is_sent_again_by_reference(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from streams._batch import Sinks, count_batch

    state = _state_with_a_bug_for("NG", monkeypatch)
    dead, alerts = _AckTopic(fail=1), _AckTopic()
    events: dict[str, Any] = {}
    batch = [_Record(account("RU"), 0), _Record(account("NG"), 1)]
    await count_batch(state, Sinks(events, {}, dead, alerts), batch)

    (copy, reference) = dead.sent  # the copy was refused after it was queued
    assert copy[1] != b""
    assert copy[2]["dlq_error_type"] == b"ZeroDivisionError"
    assert (reference[0], reference[1], reference[2]["dlq_offset"]) == (b"NG", b"", b"1")
    assert state.processor.stats.dead_lettered == 1
    assert set(state.processor.store.snapshot()) == {"RU"}
