"""Replaying history for audits on the real broker: exact edges, filters, reproducible bytes."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result
from stix2validator import validate_string

from consumers import subscribe
from disruptfeed.audit._replay import ReplayFilter, replay
from disruptfeed.cli import main
from disruptfeed.settings import Settings
from producers import FeedProducer
from schemas import EventBase, codec
from tests.factories import T0, account, network, report

pytestmark = pytest.mark.integration

SettingsFactory = Callable[..., Awaitable[Settings]]
MS = dt.timedelta(milliseconds=1)
SINCE = T0
UNTIL = T0 + dt.timedelta(hours=6)


def _at(event: EventBase, when: dt.datetime) -> EventBase:
    return event.model_copy(update={"occurred_at": when, "recorded_at": when})


def _history() -> tuple[list[EventBase], list[EventBase]]:
    """Events around the range's edges, and the ones a replay of the range must return."""
    inside = [
        _at(account("RU"), SINCE),  # the first instant is in
        _at(account("CN", network_id="spamouflage"), SINCE + dt.timedelta(hours=1)),
        _at(network("IR", network_id="storm-2035"), SINCE + dt.timedelta(hours=2)),
        _at(report(networks=("storm-2035",)), SINCE + dt.timedelta(hours=3)),
        _at(account("RU"), UNTIL - MS),  # the last millisecond is in
    ]
    outside = [
        _at(account("RU"), SINCE - MS),
        _at(account("RU"), UNTIL),  # the end is exclusive
        _at(network("KP"), UNTIL + dt.timedelta(days=1)),
    ]
    everything = inside + outside
    random.Random(7).shuffle(everything)
    return everything, inside


async def _publish(settings: Settings, events: list[EventBase]) -> None:
    async with FeedProducer(settings) as producer:
        outcomes = await producer.publish_many(events)
    assert all(o.ok for o in outcomes)


def _cli(settings: Settings, *args: str) -> Result:
    return CliRunner().invoke(main, ["replay", *args], obj=settings, catch_exceptions=False)


def _settings(make: SettingsFactory) -> Settings:
    async def made() -> Settings:
        return await make()

    return asyncio.run(made())


async def test_replay_is_exact_at_the_edges_ordered_and_filtered(
    make_settings: SettingsFactory,
) -> None:
    settings = await make_settings()
    everything, inside = _history()
    await _publish(settings, everything)
    result = await replay(settings, ReplayFilter(SINCE, UNTIL))
    want = sorted(inside, key=lambda e: (e.occurred_at, e.event_id))
    assert [e.event.event_id for e in result.events] == [e.event_id for e in want]
    assert [e.value for e in result.events] == [codec.encode(e) for e in want]  # stored bytes
    assert result.scanned == len(everything)

    by_region = await replay(settings, ReplayFilter(SINCE, UNTIL, regions=("RU",)))
    assert {e.event.region for e in by_region.events} == {"RU"}
    assert len(by_region.events) == 2
    by_type = await replay(settings, ReplayFilter(SINCE, UNTIL, types=("report.released",)))
    assert [e.event.type for e in by_type.events] == ["report.released"]
    assert by_type.scanned < len(everything)  # only the report topic was read
    by_network = await replay(settings, ReplayFilter(SINCE, UNTIL, networks=("storm-2035",)))
    assert {e.event.type for e in by_network.events} == {"network.identified", "report.released"}


async def test_typed_client_replays_a_range_and_ends(make_settings: SettingsFactory) -> None:
    settings = await make_settings()
    everything, inside = _history()
    await _publish(settings, everything)
    got = [event.event_id async for event in subscribe(settings=settings, since=SINCE, until=UNTIL)]
    assert sorted(got) == sorted(e.event_id for e in inside)


def test_cli_output_is_byte_identical_and_counts_duplicates(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = _settings(make_settings)
    everything, inside = _history()
    asyncio.run(_publish(settings, everything))
    # The same event published again by a second producer is one event in a replay.
    asyncio.run(_publish(settings, inside[:1]))
    args = ("--since", SINCE.isoformat(), "--until", UNTIL.isoformat())
    first = _cli(settings, *args, "--out", str(tmp_path / "a.jsonl"))
    second = _cli(settings, *args, "--out", str(tmp_path / "b.jsonl"))
    assert first.exit_code == second.exit_code == 0, first.output
    a, b = (tmp_path / "a.jsonl").read_bytes(), (tmp_path / "b.jsonl").read_bytes()
    assert a == b
    lines = a.splitlines()
    assert len(lines) == len(inside)
    assert {orjson.loads(line)["event_id"] for line in lines} == {str(e.event_id) for e in inside}
    assert "1 duplicates skipped" in first.output


def test_stix_export_is_valid_stix_21_and_byte_identical(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = _settings(make_settings)
    everything, inside = _history()
    asyncio.run(_publish(settings, everything))
    args = ("--since", SINCE.isoformat(), "--until", UNTIL.isoformat(), "--format", "stix")
    first = _cli(settings, *args, "--out", str(tmp_path / "a.json"))
    second = _cli(settings, *args, "--out", str(tmp_path / "b.json"))
    assert first.exit_code == second.exit_code == 0, first.output
    a = (tmp_path / "a.json").read_bytes()
    assert a == (tmp_path / "b.json").read_bytes()
    result = validate_string(a.decode())
    assert result.is_valid, [str(e) for e in result.errors]
    objects = orjson.loads(a)["objects"]
    named = {
        ref["external_id"]
        for obj in objects
        for ref in obj.get("external_references", ())
        if ref["source_name"] == "disruptfeed"
    }
    # Every account disruption and report of the range became its own object; nothing else did.
    wanted = {str(e.event_id) for e in inside if e.type != "network.identified"}
    assert named == wanted


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--since", "2026-03-02T00:00Z", "--until", "2026-03-01T00:00Z"), "must be after"),
        (("--since", "2026-03-01T00:00", "--until", "2026-03-02T00:00Z"), "no timezone"),
        (("--since", "yesterday", "--until", "2026-03-02T00:00Z"), "ISO 8601"),
        (("--since", "2026-03-01T00:00Z", "--until", "2026-03-02T00:00Z", "--region", "XX"),
         "unknown region"),
        (("--since", "2026-03-01T00:00Z", "--until", "2026-03-02T00:00Z", "--type", "alert"),
         "unknown event type"),
    ],
)  # fmt: skip
def test_bad_arguments_exit_2_with_one_line_and_write_nothing(
    make_settings: SettingsFactory, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    settings = _settings(make_settings)
    out = tmp_path / "replay.jsonl"
    result = _cli(settings, *args, "--out", str(out))
    assert result.exit_code == 2
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
async def test_a_replay_of_100_000_events_is_complete(make_settings: SettingsFactory) -> None:
    settings = await make_settings()
    events = [
        _at(account(random.Random(i).choice(["RU", "CN", "IR"])), T0 + i * MS)
        for i in range(100_000)
    ]
    await _publish(settings, events)
    result = await replay(settings, ReplayFilter(T0, T0 + dt.timedelta(hours=1)))
    assert result.scanned == 100_000
    assert len(result.events) == 100_000
    assert [e.event.event_id for e in result.events] == [e.event_id for e in events]
