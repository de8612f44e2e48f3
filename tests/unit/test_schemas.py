from __future__ import annotations

import datetime as dt

import orjson
import pytest
from pydantic import ValidationError

from disruptfeed.errors import DecodeError, InvalidEventError, SchemaValidationError
from schemas import (
    MAX_EVENT_BYTES,
    AccountDisrupted,
    NetworkIdentified,
    ReportReleased,
    ce_type,
    codec,
)
from tests.factories import account, as_dict, network, report

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("make", [account, network, report])
def test_round_trip_is_lossless(make: object) -> None:
    event = make()  # type: ignore[operator]
    decoded = codec.decode(codec.encode(event))
    assert decoded == event
    assert type(decoded) is type(event)


def test_models_are_frozen() -> None:
    event = account()
    with pytest.raises(ValidationError, match="frozen"):
        event.accounts = 5


def test_headers_are_cloudevents_binary_mode() -> None:
    event = account(region="IR")
    headers = dict(codec.headers(event))
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_id"] == str(event.event_id).encode()
    assert headers["ce_type"] == b"io.disruptfeed.account.disrupted.v1"
    assert headers["ce_subject"] == b"IR"
    assert headers["ce_source"] == b"urn:disruptfeed:test"
    assert dt.datetime.fromisoformat(headers["ce_time"].decode()) == event.occurred_at
    assert headers["content-type"] == b"application/json"
    assert codec.key(event) == b"IR"


def test_topic_names_per_type() -> None:
    assert AccountDisrupted.topic_name == "account-disrupted"
    assert NetworkIdentified.topic_name == "network-identified"
    assert ReportReleased.topic_name == "report-released"
    assert ce_type("report.released") == "io.disruptfeed.report.released.v1"


def _broken(change: dict[str, object], base: dict[str, object] | None = None) -> bytes:
    doc = base or as_dict(account())
    doc.update(change)
    return orjson.dumps(doc)


def _reject(data: bytes | str) -> InvalidEventError:
    with pytest.raises(InvalidEventError) as info:
        codec.decode(data)
    return info.value


def test_truncated_json_says_where() -> None:
    data = codec.encode(account())[:40]
    error = _reject(data)
    assert isinstance(error, DecodeError)
    assert "EOF while parsing" in str(error)
    assert "column 40" in str(error)


def test_non_utf8_bytes_name_the_byte() -> None:
    data = codec.encode(account()).replace(b"Test Actor", b"Test \xff Actor")
    error = _reject(data)
    assert isinstance(error, DecodeError)
    assert "not valid UTF-8" in str(error)
    position = data.index(b"\xff")
    assert f"byte {position} is 0xff" in str(error)


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"accounts": "5"}, "accounts", "valid integer"),
        ({"accounts": 0}, "accounts", "greater than or equal to 1"),
        ({"event_id": "not-a-uuid"}, "event_id", "UUID"),
        ({"occurred_at": "2026-03-01T12:00:00"}, "occurred_at", "timezone"),
        ({"recorded_at": "yesterday"}, "recorded_at", "valid datetime"),
        ({"occurred_at": 1_700_000_000}, "occurred_at", "datetime"),
        ({"activity": "hacking"}, "activity", "influence-operation"),
        ({"surprise": 1}, "surprise", "Extra inputs are not permitted"),
        ({"reason": "x" * 2_001}, "reason", "at most 2000 characters"),
        ({"network_id": "Has Spaces"}, "network_id", "should match pattern"),
        ({"type": "account.deleted"}, "type", "does not match any of the expected tags"),
        ({"schema_version": 2}, "schema_version", "Input should be 1"),
    ],
)
def test_bad_fields_are_named_with_a_reason(
    change: dict[str, object], field: str, reason: str
) -> None:
    error = _reject(_broken(change))
    assert isinstance(error, SchemaValidationError)
    fields = {p.field for p in error.problems}
    assert field in fields, error.problems
    assert reason in str(error)


@pytest.mark.parametrize(
    ("region", "reason"),
    [
        ("XX", "not an ISO 3166-1 alpha-2 code"),
        ("ru", "upper case: use 'RU'"),
        ("Russia", "not an ISO 3166-1 alpha-2 code"),
    ],
)
def test_unknown_region_codes_are_rejected(region: str, reason: str) -> None:
    doc = as_dict(account())
    doc["actor"]["region"] = region
    error = _reject(orjson.dumps(doc))
    assert error.field == "actor.region"
    assert reason in error.reason


def test_explicit_unknown_region_is_accepted() -> None:
    doc = as_dict(account())
    doc["actor"]["region"] = "unknown"
    assert codec.decode(orjson.dumps(doc)).region == "unknown"


def test_missing_type_is_explained() -> None:
    doc = as_dict(account())
    del doc["type"]
    error = _reject(orjson.dumps(doc))
    assert error.field == "type"
    assert "needs a 'type'" in error.reason


def test_not_an_object() -> None:
    error = _reject(b"[1, 2]")
    assert "object" in str(error)


def test_oversized_event_is_rejected_before_parsing() -> None:
    data = b'{"pad": "' + b"x" * MAX_EVENT_BYTES + b'"}'
    error = _reject(data)
    assert isinstance(error, DecodeError)
    assert f"the limit is {MAX_EVENT_BYTES}" in str(error)


def test_oversized_list_is_rejected() -> None:
    error = _reject(codec.dumps({**as_dict(network()), "targets": ["t"] * 65}))
    assert error.field == "targets"
    assert "at most 64 items" in error.reason


def test_report_url_must_be_http() -> None:
    error = _reject(codec.dumps({**as_dict(report()), "url": "javascript:alert(1)"}))
    assert error.field == "url"


def test_headers_must_agree_with_body() -> None:
    event = account()
    headers = [("ce_id", b"00000000-0000-0000-0000-000000000000")]
    with pytest.raises(SchemaValidationError, match="differs from event_id"):
        codec.decode_record(codec.encode(event), headers)
    assert codec.decode_record(codec.encode(event), codec.headers(event)) == event


def test_tombstone_is_rejected() -> None:
    with pytest.raises(DecodeError, match="tombstone"):
        codec.decode_record(None, [])
