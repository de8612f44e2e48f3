"""Property-based tests of the event models, the codec and the JSON Lines reader.

Valid events survive encode -> decode -> encode byte for byte; anything else (random bytes,
random JSON, a valid event with one field changed) is rejected with our own error naming the
line and the field, never with another exception.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from typing import Any

import orjson
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from disruptfeed.errors import DecodeError, InvalidEventError, SchemaValidationError
from producers import read_events
from schemas import MAX_EVENT_BYTES, EventBase, codec
from tests.factories import account, network, report
from tests.fuzz import events, examples, json_values

pytestmark = pytest.mark.unit


def _decoded(data: bytes) -> EventBase | InvalidEventError:
    """The event ``data`` holds, or the error the codec gave (any other exception propagates)."""
    try:
        return codec.decode(data)
    except InvalidEventError as exc:
        return exc


def _check_error(error: InvalidEventError) -> None:
    """Our errors always carry at least one problem with a reason a person can act on."""
    assert isinstance(error, DecodeError | SchemaValidationError)
    assert error.problems
    for problem in error.problems:
        assert problem.reason.strip()
    assert str(error)


@given(events)
def test_valid_events_round_trip_byte_stable(event: EventBase) -> None:
    encoded = codec.encode(event)
    decoded = codec.decode(encoded)
    assert decoded == event
    assert codec.encode(decoded) == encoded
    assert codec.key(decoded) == event.region.encode()


@given(st.integers(min_value=-86_399_999_999, max_value=86_399_999_999))
@example(10_770_000_000)  # +02:59:30, which orjson wrote as "+02:60": encoded, never read back
@example(1_000_000)  # +00:00:01, which orjson wrote as "+00:00": read back as another instant
@example(-1_000_000)  # written as "-00:00"
def test_offsets_that_json_cannot_carry_are_refused(offset_us: int) -> None:
    tz = dt.timezone(dt.timedelta(microseconds=offset_us))
    when = dt.datetime(2026, 3, 1, 12, tzinfo=tz)
    if offset_us % 60_000_000 == 0:
        event = account(occurred_at=when, recorded_at=when)
        assert codec.decode(codec.encode(event)) == event
        return
    for field in ("occurred_at", "recorded_at"):
        times: dict[str, Any] = {field: when}
        with pytest.raises(ValidationError) as caught:
            account(**times)
        (error,) = caught.value.errors()
        assert error["loc"] == (field,)
        assert "not a whole number of minutes" in error["msg"]


@given(st.binary(max_size=300))
@example(b"\xfe\xff")
@example(b"{}")
@example(b"[]")
@example(b"\x00")
def test_random_bytes_are_rejected_with_a_reason(data: bytes) -> None:
    got = _decoded(data)
    assert isinstance(got, InvalidEventError)  # random bytes are not a whole event
    _check_error(got)


@given(json_values, st.booleans())
def test_random_json_is_rejected_with_a_reason(value: Any, ascii_only: bool) -> None:
    data = json.dumps(value, ensure_ascii=ascii_only).encode()
    got = _decoded(data)
    assert isinstance(got, InvalidEventError)
    _check_error(got)
    if not isinstance(value, dict):
        assert got.field == ""  # the whole document is at fault, not one of its fields


def _paths(doc: dict[str, Any]) -> list[tuple[str, ...]]:
    """Every field of an event document, nested actor fields included."""
    out: list[tuple[str, ...]] = []
    for key, value in doc.items():
        out.append((key,))
        if isinstance(value, dict):
            out += [(key, inner) for inner in value]
    return out


@st.composite
def mutated(draw: st.DrawFn) -> tuple[bytes, tuple[str, ...]]:
    """A valid event's document with one field replaced, deleted, or one key added."""
    doc = codec.to_dict(draw(events))
    path = draw(st.sampled_from(_paths(doc)))
    how = draw(st.sampled_from(["replace", "delete", "add"]))
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if how == "replace":
        parent[path[-1]] = draw(json_values)
    elif how == "delete":
        del parent[path[-1]]
    else:
        extra = draw(st.text(min_size=1, max_size=12).filter(lambda k: k not in parent))
        parent[extra] = draw(json_values)
        path = (*path[:-1], extra)
    return json.dumps(doc).encode(), path


@given(mutated())
def test_one_changed_field_is_named_in_the_reason(case: tuple[bytes, tuple[str, ...]]) -> None:
    data, path = case
    got = _decoded(data)
    if isinstance(got, EventBase):
        # The change happened to be valid (an optional field deleted, another valid value):
        # then it round-trips like any valid event.
        assert codec.encode(codec.decode(codec.encode(got))) == codec.encode(got)
        return
    _check_error(got)
    if path == ("type",):
        # Another type changes which fields are expected, so any field may be named.
        return
    assume(len(data) <= MAX_EVENT_BYTES)
    field = ".".join(path)
    named = [p.field for p in got.problems]
    assert any(f == field or f.startswith(field + ".") for f in named), (field, named)


@settings(max_examples=examples(0.5))  # several lines an example
@given(st.lists(st.binary(max_size=120) | events.map(codec.encode), max_size=8))
def test_jsonl_reader_judges_every_line_and_names_it(chunks: list[bytes]) -> None:
    blob = b"\n".join(chunks)
    lines = io.BytesIO(blob).readlines()  # what iterating a file opened "rb" gives
    results = list(read_events(lines))
    nonblank = [n for n, raw in enumerate(lines, start=1) if raw.rstrip(b"\r\n").strip()]
    assert [r.line for r in results] == nonblank
    for result in results:
        assert (result.event is None) != (result.error is None)
        described = result.describe("in.jsonl")
        for row in described.splitlines():
            assert row.startswith(f"in.jsonl:{result.line}: ")
        if result.error is not None:
            _check_error(result.error)
        else:
            assert result.event is not None
            assert codec.encode(result.event) == lines[result.line - 1].rstrip(b"\r\n")


@pytest.mark.parametrize("factory", [account, network, report])
def test_the_factories_events_round_trip(factory: Any) -> None:
    event = factory()
    assert codec.encode(codec.decode(codec.encode(event))) == codec.encode(event)
    assert orjson.loads(codec.encode(event))["type"] == event.type
