"""Typed disruption events, their CloudEvents codec, and schema export.

Public API::

    from schemas import AccountDisrupted, NetworkIdentified, ReportReleased, Event, codec
    from schemas import Alert, decode_alert  # the alerts topic
"""

from __future__ import annotations

__all__ = [
    "ALERT_CE_SOURCE",
    "DLQ_CODE_HEADER",
    "DLQ_ERROR_TYPE_HEADER",
    "DLQ_FIELD_HEADER",
    "DLQ_HEADERS",
    "DLQ_OFFSET_HEADER",
    "DLQ_PARTITION_HEADER",
    "DLQ_REASON_HEADER",
    "DLQ_TOPIC_HEADER",
    "DLQ_VALUE_BYTES_HEADER",
    "EVENT_TYPES",
    "ISO_3166_ALPHA2",
    "MAX_EVENT_BYTES",
    "SCHEMA_VERSION",
    "SEVERITY_RANK",
    "UNKNOWN_REGION",
    "AccountDisrupted",
    "Activity",
    "Actor",
    "Alert",
    "AlertKind",
    "AlertStatus",
    "Attribution",
    "Confidence",
    "Event",
    "EventBase",
    "EventCodec",
    "EventType",
    "NetworkIdentified",
    "Region",
    "ReportReleased",
    "Severity",
    "alert_headers",
    "alert_key",
    "asyncapi_document",
    "ce_type",
    "codec",
    "decode_alert",
    "encode_alert",
    "export",
    "json_schemas",
    "schema_id",
]

from schemas._alerts import (
    ALERT_CE_SOURCE,
    SEVERITY_RANK,
    Alert,
    AlertKind,
    AlertStatus,
    Severity,
    alert_headers,
    alert_key,
    decode_alert,
    encode_alert,
)
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
    DLQ_CODE_HEADER,
    DLQ_ERROR_TYPE_HEADER,
    DLQ_FIELD_HEADER,
    DLQ_HEADERS,
    DLQ_OFFSET_HEADER,
    DLQ_PARTITION_HEADER,
    DLQ_REASON_HEADER,
    DLQ_TOPIC_HEADER,
    DLQ_VALUE_BYTES_HEADER,
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
