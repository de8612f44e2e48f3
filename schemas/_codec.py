"""The one codec: events to and from Kafka records (CloudEvents 1.0, Kafka binary mode).

A record's value is the event's JSON document (encoded with orjson); its key is the actor region;
its headers carry the CloudEvents attributes, so routers and auditors can read the envelope without
parsing the body. Decoding validates the body with pydantic and checks that the headers agree.
"""

from __future__ import annotations

__all__ = [
    "CE_SOURCE_DEFAULT",
    "CONTENT_TYPE",
    "MAX_EVENT_BYTES",
    "EventCodec",
    "ce_type",
    "codec",
]

import functools
from collections.abc import Iterable
from typing import Any, Final, get_args

import orjson
from pydantic import TypeAdapter, ValidationError

from disruptfeed.errors import DecodeError, FieldProblem, SchemaValidationError
from schemas._events import (
    SCHEMA_VERSION,
    AccountDisrupted,
    Actor,
    Event,
    EventBase,
    NetworkIdentified,
    ReportReleased,
)
from schemas._types import EventType

CONTENT_TYPE: Final = "application/json"
CE_SOURCE_DEFAULT: Final = "urn:disruptfeed"
MAX_EVENT_BYTES: Final = 64 * 1024
"""Largest encoded event accepted. Real events are under 2 KiB; anything bigger is a mistake."""

_TAGS: Final = frozenset(get_args(EventType))
_BY_TYPE: Final[dict[str, type[EventBase]]] = {
    "account.disrupted": AccountDisrupted,
    "network.identified": NetworkIdentified,
    "report.released": ReportReleased,
}


def ce_type(event_type: str, version: int = 1) -> str:
    """The CloudEvents ``type`` of an event type: ``io.disruptfeed.account.disrupted.v1``."""
    return f"io.disruptfeed.{event_type}.v{version}"


@functools.cache
def _ce_type_bytes(event_type: str, version: int) -> bytes:
    # Headers are built per published event; there are a handful of (type, version) pairs.
    return ce_type(event_type, version).encode()


_SPEC_VERSION: Final = ("ce_specversion", b"1.0")
_CONTENT_TYPE: Final = ("content-type", CONTENT_TYPE.encode())


def _problems(exc: ValidationError) -> list[FieldProblem]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = list(err["loc"])
        # The discriminated union puts the tag first ("account.disrupted", "accounts"): drop it.
        if loc and loc[0] in _TAGS:
            loc = loc[1:]
        field = ".".join(str(part) for part in loc)
        msg = err["msg"]
        if err["type"] == "union_tag_invalid":
            field = "type"
        elif err["type"] == "union_tag_not_found":
            field, msg = "type", "missing: every event needs a 'type' field"
        problems.append(FieldProblem(field, msg))
    return problems


class EventCodec:
    """Encodes events to record parts and decodes record parts to validated events."""

    def __init__(self) -> None:
        self._adapter: TypeAdapter[Event] = TypeAdapter(Event)

    # --- encoding ----------------------------------------------------------------------------
    def encode(self, event: EventBase) -> bytes:
        """The record value: the event's JSON document."""
        return orjson.dumps(event.model_dump(mode="python"))

    def key(self, event: EventBase) -> bytes:
        """The record key: the actor region, so one region's events keep their order."""
        return event.region.encode()

    def headers(self, event: EventBase) -> list[tuple[str, bytes]]:
        """CloudEvents binary-mode headers for an event."""
        return [
            _SPEC_VERSION,
            ("ce_id", str(event.event_id).encode()),
            ("ce_source", event.source.encode()),
            ("ce_type", _ce_type_bytes(event.type, event.schema_version)),
            ("ce_time", event.occurred_at.isoformat().encode()),
            ("ce_subject", event.region.encode()),
            _CONTENT_TYPE,
        ]

    # --- decoding ----------------------------------------------------------------------------
    def decode(self, data: bytes | str, *, reader: bool = False) -> Event:
        """Validate one JSON document into an event.

        Producers validate strictly (the default). With ``reader``, a document of a newer
        schema version is accepted without the fields this version does not define.

        Raises:
            DecodeError: the bytes are not a UTF-8 JSON object, or too large.
            SchemaValidationError: the JSON does not match its event type's schema.
        """
        size = len(data)
        if size > MAX_EVENT_BYTES:
            raise DecodeError(
                [FieldProblem("", f"event is {size} bytes; the limit is {MAX_EVENT_BYTES}")]
            )
        try:
            return self._adapter.validate_json(data, context=_READER if reader else None)
        except ValidationError as first:
            exc = first
        # Only a failed read pays for a look at the version: the common case costs nothing.
        if reader and exc.errors()[0]["type"] != "json_invalid":
            known = _known_fields_of_newer(data)
            if known is not None:
                try:
                    return self._adapter.validate_json(known, context=_READER)
                except ValidationError as second:
                    exc = second
        if exc.errors()[0]["type"] == "json_invalid":
            raise DecodeError([_json_problem(data, exc)]) from None
        raise SchemaValidationError(_problems(exc)) from None

    def decode_record(
        self, value: bytes | None, headers: Iterable[tuple[str, bytes]] = ()
    ) -> Event:
        """Decode a Kafka record and check that its CloudEvents headers agree with the body."""
        if value is None:
            raise DecodeError([FieldProblem("", "record has no value (tombstone)")])
        headers = list(headers)
        for name, raw in headers:
            # Binary-mode CloudEvents: the value is the data, in its content type. Absent, it is
            # read as JSON (producers of other languages may not send it).
            if name == "content-type" and not _is_json(raw):
                raise DecodeError([FieldProblem("content-type", f"{raw!r} is not {CONTENT_TYPE}")])
        event = self.decode(value, reader=True)
        for name, raw in headers:
            if name == "ce_id" and raw != str(event.event_id).encode():
                raise SchemaValidationError(
                    [
                        FieldProblem(
                            "ce_id", f"header {raw!r} differs from event_id {event.event_id}"
                        )
                    ]
                )
            if name == "ce_type" and raw != _ce_type_bytes(event.type, event.schema_version):
                raise SchemaValidationError(
                    [FieldProblem("ce_type", f"header {raw!r} differs from type {event.type!r}")]
                )
        return event

    def to_dict(self, event: EventBase) -> dict[str, Any]:
        """The event as plain JSON-compatible data."""
        result: dict[str, Any] = orjson.loads(self.encode(event))
        return result

    def dumps(self, obj: Any) -> bytes:
        """Orjson for any other JSON the project writes (alerts, exports, summaries)."""
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


_READER: Final = {"reader": True}


def _is_json(raw: bytes | None) -> bool:
    media = (raw or b"").split(b";", 1)[0].strip().lower()
    return media == CONTENT_TYPE.encode()


def _known_fields_of_newer(data: bytes | str) -> bytes | None:
    """A newer-version document without the fields this version's model does not define.

    None when the document is not of a newer version (or not an object of a known type).
    Filtering the JSON and validating it again keeps pydantic's JSON mode (and strictness).
    """
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    version, cls = doc.get("schema_version"), _BY_TYPE.get(str(doc.get("type")))
    if not isinstance(version, int) or version <= SCHEMA_VERSION or cls is None:
        return None
    known = {k: v for k, v in doc.items() if k in cls.model_fields}
    if isinstance(known.get("actor"), dict):
        known["actor"] = {k: v for k, v in known["actor"].items() if k in Actor.model_fields}
    return orjson.dumps(known)


def _json_problem(data: bytes | str, exc: ValidationError) -> FieldProblem:
    if isinstance(data, bytes):
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as err:
            return FieldProblem("", f"not valid UTF-8: byte {err.start} is {data[err.start]:#04x}")
    return FieldProblem("", exc.errors()[0]["msg"])


codec: Final = EventCodec()
"""The process-wide codec instance."""
