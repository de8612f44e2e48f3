"""Property-based tests of CloudEvents header decoding (Kafka binary mode).

Random header lists (any names, any values, non-UTF-8 bytes, null values, headers missing or
repeated) give a valid event or a decode error naming the header, never another exception.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from disruptfeed.errors import DecodeError, InvalidEventError, SchemaValidationError
from schemas import EventBase, codec
from schemas._provenance import KEY_ID_HEADER, SEQUENCE_HEADER, SIGNATURE_HEADER, provenance
from tests.fuzz import events, examples

pytestmark = pytest.mark.unit

Headers = list[tuple[str, Any]]

KNOWN = [
    "ce_specversion",
    "ce_id",
    "ce_source",
    "ce_type",
    "ce_time",
    "ce_subject",
    "content-type",
    SEQUENCE_HEADER,
    KEY_ID_HEADER,
    SIGNATURE_HEADER,
]
names = st.sampled_from(KNOWN) | st.text(max_size=20)
values = st.one_of(
    st.sampled_from([b"application/json", b"Application/JSON; charset=utf-8", b"text/plain"]),
    st.binary(max_size=40),  # mostly not UTF-8
    st.text(max_size=40).map(str.encode),
    st.text("0123456789", min_size=1, max_size=5_000).map(str.encode),  # sequences of any length
    st.binary(max_size=64).map(base64.b64encode),  # signatures, valid or not
    st.none(),  # Kafka allows a header without a value
)


@st.composite
def shuffled_headers(draw: st.DrawFn, event: EventBase) -> Headers:
    """The event's own headers, some dropped, some repeated or changed, random ones mixed in."""
    own: Headers = list(codec.headers(event))
    kept = draw(st.lists(st.sampled_from(own), max_size=len(own) + 3))  # missing, repeated
    changed = draw(st.lists(st.tuples(st.sampled_from(KNOWN), values), max_size=3))
    noise = draw(st.lists(st.tuples(names, values), max_size=4))
    return draw(st.permutations(kept + changed + noise))


def _json_media(raw: bytes | None) -> bool:
    """Whether a content-type value names JSON (parameters and case aside)."""
    return (raw or b"").split(b";", 1)[0].strip().lower() == b"application/json"


def _first_problem(event: EventBase, headers: Headers) -> str | None:
    """The header the codec must name: a content type other than JSON first (the value cannot
    be read), then the first ce_id or ce_type that disagrees with the body; None: no problem."""
    for name, raw in headers:
        if name == "content-type" and not _json_media(raw):
            return name
    want = {name: raw for name, raw in codec.headers(event) if name in ("ce_id", "ce_type")}
    for name, raw in headers:
        if name in want and raw != want[name]:
            return name
    return None


@settings(max_examples=examples(1.0))
@given(events.flatmap(lambda e: st.tuples(st.just(e), shuffled_headers(e))))
def test_header_lists_give_the_event_or_name_the_header(case: tuple[EventBase, Headers]) -> None:
    event, headers = case
    problem = _first_problem(event, headers)
    if problem is None:
        assert codec.decode_record(codec.encode(event), headers) == event
        return
    with pytest.raises(InvalidEventError) as caught:
        codec.decode_record(codec.encode(event), headers)
    assert caught.value.field == problem
    if problem == "content-type":
        assert isinstance(caught.value, DecodeError)
        assert "is not application/json" in caught.value.reason
    else:
        assert isinstance(caught.value, SchemaValidationError)
        assert "differs from" in caught.value.reason


@settings(max_examples=examples(0.5))
@given(st.none() | st.binary(max_size=200), st.lists(st.tuples(names, values), max_size=8))
def test_random_records_are_decode_errors(value: bytes | None, headers: Headers) -> None:
    with pytest.raises(InvalidEventError) as caught:
        codec.decode_record(value, headers)
    assert caught.value.problems
    assert caught.value.reason


@settings(max_examples=examples(1.0))
@given(st.lists(st.tuples(names, values), max_size=10))
@example([(SEQUENCE_HEADER, b"1" * 4_301)])  # int() refuses more than 4,300 digits
@example([("ce_source", None)])  # a null header value: message() raised TypeError
@example([("ce_id", None)])  # read as event_id None instead of missing
def test_provenance_headers_read_or_read_as_missing(headers: Headers) -> None:
    found = provenance(headers)
    last = {name: raw for name, raw in headers}  # the last of repeated headers counts
    raw_seq = last.get(SEQUENCE_HEADER)
    if raw_seq is not None and raw_seq.isdigit() and len(raw_seq) <= 19:
        assert found.sequence == int(raw_seq)
    else:
        assert found.sequence is None
    raw_sig = last.get(SIGNATURE_HEADER)
    if raw_sig is None:
        assert found.signature is None
    else:
        try:
            expected = base64.b64decode(raw_sig, validate=True)
        except binascii.Error:
            expected = b""
        assert found.signature == expected
    assert found.event_id == (last.get("ce_id") or b"")
    message = found.message(b"value")
    assert message.endswith(b"\0value")
