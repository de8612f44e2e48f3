"""Publisher provenance against the real broker: sequence numbers, event signatures, keys."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from consumers._kafka import read_to_end, start_consumer
from disruptfeed._keys import load_signing_key, public_pem, trusted_keys
from disruptfeed.audit._checkpoint import load_checkpoint_files, make_checkpoint
from disruptfeed.audit._verify import verify
from disruptfeed.cli import main
from disruptfeed.errors import ConfigurationError
from disruptfeed.settings import Settings
from disruptfeed.topics import EVENT_TOPICS
from producers import FeedProducer
from producers._sequence import SequenceStore, sequence_store
from schemas import EventBase
from schemas._provenance import provenance
from tests.factories import account

pytestmark = pytest.mark.integration

SettingsFactory = Callable[..., Awaitable[Settings]]


def _events(n: int, start: int = 0) -> list[EventBase]:
    return [account(("RU", "CN", "IR")[i % 3], minutes=start + i) for i in range(n)]


async def _publish(settings: Settings, events: list[EventBase]) -> None:
    async with FeedProducer(settings) as producer:
        assert all(o.ok for o in await producer.publish_many(events))


async def _sequences(settings: Settings) -> list[int]:
    numbers: list[int] = []
    consumer = await start_consumer(settings)
    try:
        for name in EVENT_TOPICS:
            async for record in read_to_end(consumer, settings.topic(name), settings.bootstrap):
                origin = provenance(record.headers)
                assert origin.sequence is not None
                assert origin.key_id == load_signing_key(settings, publisher=True).key_id
                numbers.append(origin.sequence)
    finally:
        await consumer.stop()
    return sorted(numbers)


async def test_a_restarted_publisher_goes_on_from_where_it_was(
    make_settings: SettingsFactory,
) -> None:
    settings = await make_settings()
    await _publish(settings, _events(4))
    store = sequence_store(settings)
    saved = store.path.read_bytes()
    await _publish(settings, _events(3, start=10))
    assert await _sequences(settings) == list(range(1, 8))

    # Killed after the broker acknowledged 3 more but before the file was written: the
    # publisher finds its numbers in the feed instead of handing out 5, 6, 7 again.
    await _publish(settings, _events(3, start=20))
    store.path.write_bytes(saved)
    await _publish(settings, _events(2, start=30))
    assert await _sequences(settings) == list(range(1, 13))


async def test_a_second_process_cannot_take_the_same_numbers(
    make_settings: SettingsFactory,
) -> None:
    settings = await make_settings()
    async with FeedProducer(settings) as producer:
        await producer.publish(account("RU"))
        rival = SequenceStore(sequence_store(settings).path)  # as another process would
        with pytest.raises(ConfigurationError, match="another process is publishing"):
            rival.acquire()
    rival.acquire()  # free once the first publisher stopped
    rival.release()


async def _checkpointed(settings: Settings, *rounds: list[EventBase]) -> list[dt.datetime]:
    key = load_signing_key(settings, create=True)
    times = []
    for events in rounds:
        await _publish(settings, events)
        times.append((await make_checkpoint(settings, key)).created_at)
    return times


async def test_events_by_an_unknown_or_retired_publisher_key_are_reported(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = await make_settings()
    await _checkpointed(settings, _events(6))
    old = load_signing_key(settings, publisher=True)
    old_pub = tmp_path / "publisher-old.pub"
    old_pub.write_bytes(public_pem(old))
    settings.publisher_key_path.unlink()  # rotation: the publisher signs with a new key
    before_rotation = dt.datetime.now(dt.UTC)
    await _checkpointed(settings, _events(4, start=50))
    checkpoints = load_checkpoint_files(settings.checkpoint_path)

    report = await verify(settings, checkpoints, trusted_keys(settings))
    assert report.counts() == {"unknown-key": 6}, [str(f) for f in report.findings]

    keeping = settings.model_copy(update={"audit_trusted_keys": str(old_pub)})
    assert (await verify(keeping, checkpoints, trusted_keys(keeping))).ok

    # Retired before it signed anything: all six of its events are reported, nothing else.
    retired_at = f"{old_pub}@{(before_rotation - dt.timedelta(hours=1)).isoformat()}"
    retired = settings.model_copy(update={"audit_trusted_keys": retired_at})
    assert (await verify(retired, checkpoints, trusted_keys(retired))).counts() == {
        "retired-key": 6
    }


def _cli(settings: Settings, *args: str) -> Result:
    return CliRunner().invoke(main, ["audit", *args], obj=settings, catch_exceptions=False)


async def test_verify_since_until_checks_only_the_checkpoints_in_range(
    make_settings: SettingsFactory,
) -> None:
    settings = await make_settings()
    times = await _checkpointed(settings, _events(5), _events(7, start=10), _events(3, start=20))
    checkpoints = load_checkpoint_files(settings.checkpoint_path)
    keys = trusted_keys(settings)
    middle = await verify(settings, checkpoints, keys, since=times[1], until=times[1])
    assert middle.ok, [str(f) for f in middle.findings]
    assert (middle.checkpoints, middle.events_verified) == (1, 7)

    # The base is not verified itself, but a forged one breaks the first link in range.
    forged = [checkpoints[0].model_copy(update={"signature": "AAAA"}), *checkpoints[1:]]
    assert (await verify(settings, forged, keys, since=times[1])).counts() == {"broken-chain": 1}
    assert {"bad-signature", "broken-chain"} <= set((await verify(settings, forged, keys)).counts())

    since = (times[1] - dt.timedelta(milliseconds=1)).isoformat()
    result = await asyncio.to_thread(_cli, settings, "verify", "--since", since)
    assert result.exit_code == 0, result.output
    assert "valid: 2 checkpoints, 10 events verified, 0 not yet covered" in result.output

    for args, message in [
        (("--since", times[2].isoformat(), "--until", times[0].isoformat()), "must be after"),
        (("--since", "yesterday"), "is not an ISO 8601 time"),
        (("--since", (times[2] + dt.timedelta(hours=1)).isoformat()), "no checkpoint was made"),
    ]:
        result = await asyncio.to_thread(_cli, settings, "verify", *args)
        assert result.exit_code == 2, result.output
        [line] = result.output.strip().splitlines()
        assert message in line


async def test_the_asyncapi_document_describes_every_header_a_publisher_writes(
    make_settings: SettingsFactory,
) -> None:
    # A consumer generating code from the document must find the provenance headers an audit
    # needs (ce_sequence, ce_keyid, ce_signature), with their forms, not only CloudEvents'.
    from schemas import asyncapi_document
    from tests._asyncapi_spec import document_validator
    from tests.integration.helpers import read_raw

    settings = await make_settings()
    event = account("RU")
    await _publish(settings, [event])
    [(_, _, raw)] = await read_raw(settings, settings.topic(event.topic_name))
    headers = {name: value.decode() for name, value in raw.items()}

    doc = asyncapi_document(settings)
    name = next(n for n, c in doc["channels"].items() if c["address"].endswith(event.topic_name))
    schema = doc["components"]["messages"][name]["headers"]
    assert sorted(headers) == sorted(schema["properties"])
    validator = document_validator(doc, f"/components/messages/{name}/headers")
    assert [e.message for e in validator.iter_errors(headers)] == []
    unsigned = {k: v for k, v in headers.items() if k not in ("ce_keyid", "ce_signature")}
    assert validator.is_valid(unsigned)  # DISRUPTFEED_SIGN_EVENTS=false
    for broken in (
        {**headers, "ce_sequence": "-1"},
        {**headers, "ce_keyid": "not-a-key-id"},
        {**headers, "ce_signature": "not base64!"},
        {k: v for k, v in headers.items() if k != "ce_keyid"},  # a signature needs its key
    ):
        assert not validator.is_valid(broken), broken
