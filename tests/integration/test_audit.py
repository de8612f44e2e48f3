"""Signed checkpoints and ``audit verify`` on the real broker: valid history, and each tampering.

Kafka does not let anyone edit a stored record, so a tampered history is made the way an
attacker with broker access would have to: the records copied, one of them changed, dropped or
doubled, into another set of topics, which is then verified against the original's checkpoints.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result

from consumers._kafka import read_to_end, start_consumer, start_producer
from disruptfeed._keys import load_signing_key, trusted_keys
from disruptfeed.audit._checkpoint import Checkpoint, load_checkpoint_files, make_checkpoint
from disruptfeed.audit._verify import verify
from disruptfeed.cli import main
from disruptfeed.settings import Settings
from disruptfeed.topics import EVENT_TOPICS
from producers import FeedProducer
from schemas import EventBase
from tests.factories import account, network, report

pytestmark = pytest.mark.integration

SettingsFactory = Callable[..., Awaitable[Settings]]
Record = tuple[bytes, list[tuple[str, bytes]]]
Records = dict[tuple[str, int], list[Record]]


def _events(n: int) -> list[EventBase]:
    regions = ["RU", "CN", "IR", "KP", "BY"]
    out: list[EventBase] = [account(regions[i % 5], minutes=i) for i in range(n)]
    out += [network("IR", network_id="storm-2035"), report(networks=("storm-2035",))]
    return out


async def _publish(settings: Settings, events: list[EventBase]) -> None:
    async with FeedProducer(settings) as producer:
        assert all(o.ok for o in await producer.publish_many(events))


async def _history(settings: Settings, tmp_path: Path, sizes: tuple[int, ...]) -> Settings:
    """Events published in rounds, with a checkpoint after each round."""
    settings = settings.model_copy(update={"data_dir": tmp_path / "data"})
    key = load_signing_key(settings, create=True)
    for size in sizes:
        await _publish(settings, _events(size))
        await make_checkpoint(settings, key)
    return settings


async def _records(settings: Settings) -> Records:
    out: Records = {}
    consumer = await start_consumer(settings)
    try:
        for name in EVENT_TOPICS:
            async for r in read_to_end(consumer, settings.topic(name), settings.bootstrap):
                out.setdefault((name, r.partition), []).append((r.value, list(r.headers)))
    finally:
        await consumer.stop()
    return out


async def _copy(source: Settings, target: Settings, records: Records) -> None:
    producer = await start_producer(target)
    try:
        for (name, partition), values in records.items():
            for value, headers in values:
                await producer.send(
                    target.topic(name), value=value, partition=partition, headers=headers
                )
        await producer.flush()
    finally:
        await producer.stop()


def _biggest(records: Records) -> tuple[str, int]:
    return max(records, key=lambda k: len(records[k]))


async def test_an_untouched_history_verifies(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = await _history(await make_settings(), tmp_path, (40, 25))
    files = load_checkpoint_files(settings.checkpoint_path)
    assert [c.seq for c in files] == [1, 2]
    assert files[1].previous == files[0].digest()
    report = await verify(settings, files, trusted_keys(settings))
    assert report.ok, [str(f) for f in report.findings]
    assert report.events_verified == files[1].tree_size == 40 + 2 + 25 + 2
    assert report.not_yet_covered == 0
    await _publish(settings, _events(3))
    later = await verify(settings, files, trusted_keys(settings))
    assert later.ok
    assert later.not_yet_covered == 5

    result = await asyncio.to_thread(_cli, settings, "verify")
    assert result.exit_code == 0, result.output
    assert "valid: 2 checkpoints, 69 events verified, 5 not yet covered" in result.output


def _change_a_byte(values: list[Record]) -> list[Record]:
    value, headers = values[3]
    doc = orjson.loads(value)
    doc["accounts"] += 1
    return [*values[:3], (orjson.dumps(doc), headers), *values[4:]]


def _renumber(values: list[Record]) -> list[Record]:
    """The same bytes under another sequence number: only the signature can tell."""
    value, headers = values[3]
    changed = [(k, b"999" if k == "ce_sequence" else v) for k, v in headers]
    return [*values[:3], (value, changed), *values[4:]]


@pytest.mark.parametrize(
    ("tamper", "kinds"),
    [
        (_change_a_byte, {"altered", "bad-signature"}),
        (lambda v: v[:5] + v[6:], {"missing"}),
        # Signed ranges are offsets: an inserted copy shifts the rest, so the range reads altered.
        (lambda v: [*v[:5], v[5], *v[5:]], {"altered", "duplicated"}),
        (lambda v: [*v[:4], v[5], v[4], *v[6:]], {"altered", "reordered"}),  # two swapped
        (_renumber, {"bad-signature"}),
    ],
    ids=["changed-byte", "dropped", "duplicated", "reordered", "renumbered"],
)
async def test_each_tampering_is_found_with_its_position(
    make_settings: SettingsFactory,
    tmp_path: Path,
    tamper: Callable[[list[Record]], list[Record]],
    kinds: set[str],
) -> None:
    original = await _history(await make_settings(), tmp_path, (40,))
    records = await _records(original)
    where = _biggest(records)
    records[where] = tamper(records[where])
    copy = (await make_settings()).model_copy(update={"data_dir": original.data_dir})
    await _copy(original, copy, records)
    checkpoints = load_checkpoint_files(original.checkpoint_path)
    report = await verify(copy, checkpoints, trusted_keys(original))
    assert not report.ok
    assert kinds <= set(report.counts())
    name, partition = where
    assert any(f"{name}:{partition}" in f.where for f in report.findings)
    assert not any(f"{name}:{(partition + 1) % 3}" in f.where for f in report.findings)


def _cli(settings: Settings, *args: str) -> Result:
    return CliRunner().invoke(main, ["audit", *args], obj=settings, catch_exceptions=False)


async def test_a_forged_or_missing_checkpoint_fails_verification(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = await _history(await make_settings(), tmp_path, (10, 10, 10))
    directory = settings.checkpoint_path
    second = directory / "checkpoint-00000002.json"
    doc = orjson.loads(second.read_bytes())
    doc["tree_size"] += 1  # a claim the signer never made
    second.write_bytes(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS))
    report = await verify(settings, load_checkpoint_files(directory), trusted_keys(settings))
    assert {"bad-signature", "broken-chain", "root-mismatch"} <= set(report.counts())

    second.unlink()
    result = await asyncio.to_thread(_cli, settings, "verify", "--checkpoints", str(directory))
    assert result.exit_code == 1
    assert "missing-checkpoint: checkpoint 3: expected checkpoint 2 before it" in result.output


async def test_a_checkpoint_signed_by_an_unknown_key_is_reported(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = await _history(await make_settings(), tmp_path, (5,))
    [cp] = load_checkpoint_files(settings.checkpoint_path)
    stranger = settings.model_copy(update={"data_dir": tmp_path / "stranger"})
    load_signing_key(stranger, create=True)
    report = await verify(stranger, [cp], trusted_keys(stranger))
    assert set(report.counts()) == {"unknown-key"}


async def test_a_rotated_key_stays_valid_for_what_it_signed(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    from disruptfeed._keys import public_pem

    settings = await _history(await make_settings(), tmp_path, (5,))
    old = load_signing_key(settings)
    old_pub = tmp_path / "old.pub"
    old_pub.write_bytes(public_pem(old))
    settings.audit_key_path.unlink()  # rotation: a new key signs from now on
    new = load_signing_key(settings, create=True)
    assert new.key_id != old.key_id
    await _publish(settings, _events(5))
    await make_checkpoint(settings, new)
    trusting = settings.model_copy(update={"audit_trusted_keys": str(old_pub)})
    checkpoints = load_checkpoint_files(settings.checkpoint_path)
    assert [c.key_id for c in checkpoints] == [old.key_id, new.key_id]
    assert (await verify(trusting, checkpoints, trusted_keys(trusting))).ok
    assert set((await verify(settings, checkpoints, trusted_keys(settings))).counts()) == {
        "unknown-key"
    }


def test_bad_key_and_truncated_checkpoint_files_are_one_line_errors(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    async def setup() -> Settings:
        return await _history(await make_settings(), tmp_path, (5,))

    settings = asyncio.run(setup())
    [path] = sorted(settings.checkpoint_path.glob("checkpoint-*.json"))
    path.write_bytes(path.read_bytes()[:40])
    result = _cli(settings, "verify", "--checkpoints", str(settings.checkpoint_path))
    assert result.exit_code == 2
    [line] = result.output.strip().splitlines()
    assert "is not a readable checkpoint: not complete JSON (truncated?)" in line

    broken = settings.model_copy(update={"audit_key_file": tmp_path / "garbage.pem"})
    (tmp_path / "garbage.pem").write_text("not a key\n")
    result = _cli(broken, "checkpoint")
    assert result.exit_code == 2
    [line] = result.output.strip().splitlines()
    assert "garbage.pem is not an unencrypted PEM private key" in line
    (tmp_path / "a-directory").mkdir()
    unreadable = settings.model_copy(update={"audit_key_file": tmp_path / "a-directory"})
    result = _cli(unreadable, "checkpoint")
    assert result.exit_code == 2
    assert "cannot read the audit signing key" in result.output


def test_checkpoint_model_rejects_extra_fields() -> None:
    with pytest.raises(ValueError, match="extra"):
        Checkpoint.model_validate({"seq": 1, "surprise": True})


@pytest.mark.slow
async def test_a_replay_of_100k_events_completes_and_verifies(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    from disruptfeed.bench._events import feed_events

    settings = await make_settings()
    events = feed_events(100_000, seed=11)
    async with FeedProducer(settings) as producer:
        for start in range(0, len(events), 20_000):
            outcomes = await producer.publish_many(events[start : start + 20_000])
            assert all(o.ok for o in outcomes)
    await make_checkpoint(settings, load_signing_key(settings, create=True))

    out = tmp_path / "everything.jsonl"
    since = events[0].occurred_at.isoformat()
    until = (events[-1].occurred_at + dt.timedelta(seconds=1)).isoformat()
    args = ["replay", "--since", since, "--until", until, "--out", str(out)]
    result = await asyncio.to_thread(
        CliRunner().invoke, main, args, obj=settings, catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    lines = out.read_bytes().splitlines()
    assert len(lines) == 100_000
    assert {orjson.loads(line)["event_id"] for line in lines} == {str(e.event_id) for e in events}
    result = await asyncio.to_thread(_cli, settings, "verify")
    assert result.exit_code == 0, result.output
    assert "valid: 1 checkpoints, 100000 events verified, 0 not yet covered" in result.output
