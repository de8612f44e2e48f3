"""Typed disruption events, their CloudEvents codec, and schema export.

Public API::

    from schemas import AccountDisrupted, NetworkIdentified, ReportReleased, Event, codec
"""

from __future__ import annotations

__all__ = [
    "DLQ_ERROR_TYPE_HEADER",
    "DLQ_FIELD_HEADER",
    "DLQ_HEADERS",
    "DLQ_OFFSET_HEADER",
    "DLQ_PARTITION_HEADER",
    "DLQ_REASON_HEADER",
    "DLQ_TOPIC_HEADER",
    "EVENT_TYPES",
    "ISO_3166_ALPHA2",
    "MAX_EVENT_BYTES",
    "SCHEMA_VERSION",
    "UNKNOWN_REGION",
    "AccountDisrupted",
    "Activity",
    "Actor",
    "Attribution",
    "Confidence",
    "Event",
    "EventBase",
    "EventCodec",
    "EventType",
    "NetworkIdentified",
    "Region",
    "ReportReleased",
    "asyncapi_document",
    "ce_type",
    "codec",
    "export",
    "json_schemas",
    "schema_id",
]

from schemas._codec import MAX_EVENT_BYTES, EventCodec, ce_type, codec
from schemas._events import (
    SCHEMA_VERSION,
    AccountDisrupted,
    Actor,
    Event,
    EventBase,
    NetworkIdentified,
    ReportReleased,
)
from schemas._export import (
    DLQ_ERROR_TYPE_HEADER,
    DLQ_FIELD_HEADER,
    DLQ_HEADERS,
    DLQ_OFFSET_HEADER,
    DLQ_PARTITION_HEADER,
    DLQ_REASON_HEADER,
    DLQ_TOPIC_HEADER,
    asyncapi_document,
    export,
    json_schemas,
    schema_id,
)
from schemas._types import (
    ISO_3166_ALPHA2,
    UNKNOWN_REGION,
    Activity,
    Attribution,
    Confidence,
    EventType,
    Region,
)

EVENT_TYPES: tuple[type[EventBase], ...] = (AccountDisrupted, NetworkIdentified, ReportReleased)
"""Every event class, in a stable order."""
