"""Machine-readable contracts: a JSON Schema per event type and an AsyncAPI 3.0.0 document.

Both come from the pydantic models (JSON Schema draft 2020-12 for the record value), with two
corrections for what the codec enforces beyond the models' own schema: region codes are listed as
an ``enum`` (``Region`` checks them in a validator), and ``type`` is required (it picks the class).
"""

from __future__ import annotations

__all__ = [
    "ALERT_SCHEMA_NAME",
    "ASYNCAPI_VERSION",
    "DLQ_CODE_HEADER",
    "DLQ_ERROR_TYPE_HEADER",
    "DLQ_FIELD_HEADER",
    "DLQ_HEADERS",
    "DLQ_OFFSET_HEADER",
    "DLQ_PARTITION_HEADER",
    "DLQ_REASON_HEADER",
    "DLQ_TOPIC_HEADER",
    "DLQ_VALUE_BYTES_HEADER",
    "JSON_SCHEMA_DIALECT",
    "asyncapi_document",
    "export",
    "json_schemas",
    "schema_id",
]

from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson
from pydantic.json_schema import GenerateJsonSchema, models_json_schema

from schemas._alerts import Alert
from schemas._codec import CE_SOURCE_DEFAULT, CONTENT_TYPE, ce_type
from schemas._events import (
    SCHEMA_VERSION,
    AccountDisrupted,
    EventBase,
    NetworkIdentified,
    ReportReleased,
)
from schemas._provenance import KEY_ID_HEADER, SEQUENCE_HEADER, SIGNATURE_HEADER
from schemas._subscriptions import DeliveryAttempt, SubscriptionRecord
from schemas._types import ISO_3166_ALPHA2, UNKNOWN_REGION

if TYPE_CHECKING:
    from disruptfeed.settings import Settings
    from disruptfeed.topics import TopicSpec

ASYNCAPI_VERSION: Final = "3.0.0"
JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
_SCHEMA_BASE_URL: Final = "https://disruptfeed.dev/schemas"

# Headers a dead-letter record carries next to the original value (Kafka headers: UTF-8 text).
DLQ_REASON_HEADER: Final = "dlq_reason"
DLQ_TOPIC_HEADER: Final = "dlq_topic"
DLQ_PARTITION_HEADER: Final = "dlq_partition"
DLQ_OFFSET_HEADER: Final = "dlq_offset"
DLQ_FIELD_HEADER: Final = "dlq_field"
DLQ_ERROR_TYPE_HEADER: Final = "dlq_error_type"
DLQ_VALUE_BYTES_HEADER: Final = "dlq_value_bytes"
DLQ_CODE_HEADER: Final = "dlq_code"
DLQ_HEADERS: Final = (
    DLQ_REASON_HEADER,
    DLQ_TOPIC_HEADER,
    DLQ_PARTITION_HEADER,
    DLQ_OFFSET_HEADER,
    DLQ_FIELD_HEADER,
    DLQ_ERROR_TYPE_HEADER,
    DLQ_VALUE_BYTES_HEADER,
    DLQ_CODE_HEADER,
)
"""Every dead-letter header name."""

# The same classes as ``schemas.EVENT_TYPES``, which this module cannot import: the package
# imports this module before it defines that tuple.
_EVENT_CLASSES: Final = (AccountDisrupted, NetworkIdentified, ReportReleased)
_REGIONS: Final = [*sorted(ISO_3166_ALPHA2), UNKNOWN_REGION]
_COMPONENT_REF: Final = "#/components/schemas/{model}"
_REGION_REF: Final = "#/components/schemas/Region"
ALERT_SCHEMA_NAME: Final = "alert"
"""The key of the alerts topic's schema in :func:`json_schemas` (file ``alert.schema.json``)."""
_KAFKA_BINDING: Final = "0.5.0"
_INT_KEYS: Final = ("retention.ms", "retention.bytes", "delete.retention.ms", "max.message.bytes")
_SASL: Final = {"PLAIN": "plain", "SCRAM-SHA-256": "scramSha256", "SCRAM-SHA-512": "scramSha512"}


def _event_type(cls: type[EventBase]) -> str:
    default = cls.model_fields["type"].default
    if not isinstance(default, str):  # pragma: no cover - every event class has a type literal
        raise TypeError(f"{cls.__name__}.type has no default event type")
    return default


def _require_type(schema: dict[str, Any]) -> None:
    """Make ``type`` required: the model defaults it, but the codec needs it to pick the class."""
    required: list[str] = schema.setdefault("required", [])
    if "type" not in required:
        required.insert(0, "type")


def _summary(cls: type[EventBase]) -> str:
    return (cls.__doc__ or cls.__name__).strip().splitlines()[0]


def _camel(*words: str) -> str:
    parts = [part for word in words for part in word.replace(".", "-").split("-") if part]
    return parts[0] + "".join(part[0].upper() + part[1:] for part in parts[1:])


def schema_id(event_type: str, version: int = SCHEMA_VERSION) -> str:
    """The ``$id`` of an event type's JSON Schema.

    Args:
        event_type: An event type such as ``"account.disrupted"``.
        version: The schema version.

    Returns:
        A URL such as ``https://disruptfeed.dev/schemas/account.disrupted.v1.json``.
    """
    return f"{_SCHEMA_BASE_URL}/{event_type}.v{version}.json"


def json_schemas() -> dict[str, dict[str, Any]]:
    """One standalone JSON Schema (draft 2020-12) per event type.

    Each schema describes the Kafka record value of its topic, as produced by ``codec.encode``.

    Returns:
        A map of event type (e.g. ``"account.disrupted"``) to its schema, with ``$schema``,
        ``$id``, ``title`` and ``description``.
    """
    result: dict[str, dict[str, Any]] = {}
    for cls in _EVENT_CLASSES:
        event_type = _event_type(cls)
        body = cls.model_json_schema(mode="validation", schema_generator=GenerateJsonSchema)
        _require_type(body)
        result[event_type] = {
            "$schema": JSON_SCHEMA_DIALECT,
            "$id": schema_id(event_type),
            **body,
            "title": cls.__name__,
            "description": _event_description(cls, event_type),
        }
    body = Alert.model_json_schema(mode="validation", schema_generator=GenerateJsonSchema)
    result[ALERT_SCHEMA_NAME] = {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": schema_id(ALERT_SCHEMA_NAME),
        **body,
        "title": "Alert",
        "description": (
            "The record value of the alerts topic: one firing or resolved message about one "
            "episode, keyed by its fingerprint. alert_id is unique per message."
        ),
    }
    return result


def _event_description(cls: type[EventBase], event_type: str) -> str:
    return (
        f"{_summary(cls)} The value of a record on the '{cls.topic_name}' topic; its CloudEvents "
        f"type is '{ce_type(event_type, SCHEMA_VERSION)}'."
    )


def _text(description: str, **keywords: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **keywords}


def _headers_schema(event_type: str) -> dict[str, Any]:
    """CloudEvents 1.0 binary-mode headers, as ``EventCodec.headers`` writes them."""
    properties = {
        "ce_specversion": _text("CloudEvents specification version.", const="1.0"),
        "ce_id": _text("The event_id.", format="uuid"),
        "ce_source": _text(
            f"Event source, e.g. '{CE_SOURCE_DEFAULT}'.", minLength=1, maxLength=256
        ),
        "ce_type": _text("CloudEvents type.", const=ce_type(event_type, SCHEMA_VERSION)),
        "ce_time": _text("The event's occurred_at.", format="date-time"),
        "ce_subject": {"allOf": [{"$ref": _REGION_REF}], "description": "The actor region."},
        "content-type": _text("Media type of the value.", const=CONTENT_TYPE),
    }
    required = list(properties)
    properties |= {
        SEQUENCE_HEADER: _text(
            "The publisher's gap-free number for this event within its ce_source, in decimal "
            "(the CloudEvents sequence extension); an audit finds gaps and repeats by it.",
            pattern=r"^[0-9]{1,19}$",
        ),
        KEY_ID_HEADER: _text(
            "Id of the publisher's Ed25519 key: the first 16 hex digits of SHA-256 over the "
            "32 raw bytes of its public key.",
            pattern=r"^[0-9a-f]{16}$",
        ),
        SIGNATURE_HEADER: _text(
            "Base64 Ed25519 signature over the NUL-joined 'disruptfeed-event-v1', ce_id, "
            "ce_type, ce_source, ce_sequence and the value's exact bytes. Absent when the "
            "publisher runs with DISRUPTFEED_SIGN_EVENTS=false.",
            pattern=r"^[A-Za-z0-9+/]{86}==$",
        ),
    }
    return {
        "type": "object",
        "description": (
            "CloudEvents 1.0 attributes in Kafka binary mode, each header value UTF-8 text: "
            "they repeat the envelope so routers need not parse the value. The publisher's "
            "provenance (ce_sequence, ce_keyid, ce_signature) follows them."
        ),
        "required": required,
        "properties": properties,
        # draft-07 spelling (AsyncAPI 3.0's default schema format) of dependentRequired.
        "dependencies": {
            SIGNATURE_HEADER: [KEY_ID_HEADER, SEQUENCE_HEADER],
            KEY_ID_HEADER: [SIGNATURE_HEADER],
        },
    }


def _dead_letter_headers_schema() -> dict[str, Any]:
    decimal = r"^[0-9]+$"
    return {
        "type": "object",
        "description": (
            "Why and where the record failed, each header value UTF-8 text. "
            "Other headers of the original record may be present too."
        ),
        "required": [
            name
            for name in DLQ_HEADERS
            # dlq_code: not on dead letters written before it was added.
            if name not in (DLQ_FIELD_HEADER, DLQ_VALUE_BYTES_HEADER, DLQ_CODE_HEADER)
        ],
        "properties": {
            DLQ_REASON_HEADER: _text("Human-readable reason."),
            DLQ_TOPIC_HEADER: _text("Topic the record was read from."),
            DLQ_PARTITION_HEADER: _text("Its partition, in decimal.", pattern=decimal),
            DLQ_OFFSET_HEADER: _text("Its offset, in decimal.", pattern=decimal),
            DLQ_FIELD_HEADER: _text("Dotted path of the offending field, if the error has one."),
            DLQ_ERROR_TYPE_HEADER: _text("Error class, e.g. DecodeError or SchemaValidationError."),
            DLQ_VALUE_BYTES_HEADER: _text(
                "Set when the original value was too big to copy: its size in bytes, in "
                "decimal; the record's value is then empty and the original stays at "
                "dlq_topic/dlq_partition/dlq_offset.",
                pattern=decimal,
            ),
            DLQ_CODE_HEADER: _text(
                "The short reason code the worker counted it under (the reason label of "
                "disruptfeed_events_dead_lettered_total): decode, schema, invalid, "
                "future-event-time, beyond-dedupe-horizon; internal or handling-failed for a bug "
                "of the worker's; "
                "invalid-alert for an alert record the dispatcher could not read.",
                pattern=r"^[a-z][a-z-]*$",
            ),
        },
    }


def _topic_config(name: str, value: str) -> Any:
    """A topic config value as the Kafka channel binding types it."""
    if name == "cleanup.policy":
        return value.split(",")
    return int(value) if name in _INT_KEYS else value


def _channel_bindings(spec: TopicSpec) -> dict[str, Any]:
    config = {name: _topic_config(name, value) for name, value in spec.config.items()}
    return {
        "kafka": {
            "topic": spec.name,
            "partitions": spec.partitions,
            "replicas": spec.replication_factor,
            "topicConfiguration": config,
            "bindingVersion": _KAFKA_BINDING,
        }
    }


def _key_binding(description: str, ref: str | None = None) -> dict[str, Any]:
    # A bare {"$ref": ...} key matches both alternatives of the binding's oneOf (Reference and
    # Schema) and so fails it: references are wrapped in allOf.
    key = {"type": "string"} if ref is None else {"allOf": [{"$ref": ref}]}
    return {"kafka": {"key": {**key, "description": description}, "bindingVersion": _KAFKA_BINDING}}


def _server(host: str, settings: Settings) -> dict[str, Any]:
    tls = settings.security_protocol in ("SSL", "SASL_SSL")
    server: dict[str, Any] = {
        "host": host,
        "protocol": "kafka-secure" if tls else "kafka",
        "description": f"Kafka bootstrap address (security protocol {settings.security_protocol}).",
    }
    if settings.sasl_mechanism is not None:
        server["security"] = [{"$ref": "#/components/securitySchemes/sasl"}]
    return server


def _servers(settings: Settings) -> dict[str, Any]:
    """One server per bootstrap address: ``kafka``, or ``kafka-1``, ``kafka-2``... for several."""
    hosts = [host.strip() for host in settings.bootstrap.split(",") if host.strip()]
    names = ["kafka"] if len(hosts) == 1 else [f"kafka-{n}" for n in range(1, len(hosts) + 1)]
    return {name: _server(host, settings) for name, host in zip(names, hosts, strict=True)}


def asyncapi_document(settings: Settings) -> dict[str, Any]:
    """An AsyncAPI 3.0.0 document describing the feed as deployed with these settings.

    Args:
        settings: Supplies the bootstrap servers, the topic prefix and the topic layout.

    Returns:
        The document as JSON-compatible data: servers, one channel per topic (the event topics,
        dead-letter and alerts), their messages and ``send``/``receive`` operations. Event
        payload schemas live under ``components/schemas`` and are referenced with ``$ref``.
    """
    # Imported here: disruptfeed.topics imports the schemas package, which imports this module.
    from disruptfeed.topics import (
        ALERTS,
        CHECKPOINTS,
        DEAD_LETTER,
        DELIVERIES,
        DELIVERY_DEAD_LETTER,
        DISPATCH_STATE,
        SUBSCRIPTIONS,
        topic_specs,
    )

    specs = {spec.name: spec for spec in topic_specs(settings)}
    refs, definitions = models_json_schema(
        [
            (cls, "validation")
            for cls in (*_EVENT_CLASSES, Alert, SubscriptionRecord, DeliveryAttempt)
        ],
        ref_template=_COMPONENT_REF,
        schema_generator=GenerateJsonSchema,
    )
    schemas: dict[str, Any] = dict(definitions.get("$defs", {}))
    schemas["Region"] = _text("ISO 3166-1 alpha-2 code, or 'unknown'.", enum=list(_REGIONS))
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}

    def add_channel(
        name: str, topic: str, message: dict[str, Any], description: str, roles: tuple[str, str]
    ) -> None:
        address = settings.topic(topic)
        channels[name] = {
            "address": address,
            "title": topic,
            "description": description,
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
            "bindings": _channel_bindings(specs[address]),
        }
        messages[name] = message
        for action, who in zip(("send", "receive"), roles, strict=True):
            operations[_camel(action, name)] = {
                "action": action,
                "channel": {"$ref": f"#/channels/{name}"},
                "messages": [{"$ref": f"#/channels/{name}/messages/{name}"}],
                "summary": f"{who} {'to' if action == 'send' else 'from'} {address}.",
            }

    for cls in _EVENT_CLASSES:
        event_type = _event_type(cls)
        component = str(refs[(cls, "validation")]["$ref"]).rsplit("/", 1)[-1]
        _require_type(schemas[component])
        name = _camel(event_type)
        add_channel(
            name,
            cls.topic_name,
            {
                "name": event_type,
                "title": cls.__name__,
                "summary": _summary(cls),
                "contentType": CONTENT_TYPE,
                "headers": _headers_schema(event_type),
                "payload": {"$ref": _COMPONENT_REF.format(model=component)},
                "bindings": _key_binding("The actor region: keeps a region in order.", _REGION_REF),
            },
            f"Every {event_type} event.",
            ("Producers publish events", "Subscribers consume events"),
        )
    add_channel(
        "deadLetter",
        DEAD_LETTER,
        {
            "name": "dead-letter",
            "title": "Dead letter",
            "summary": "A record a consumer could not decode or validate.",
            "contentType": "application/octet-stream",
            "headers": _dead_letter_headers_schema(),
            "payload": _text("The original record value, byte for byte.", format="binary"),
            "bindings": _key_binding("The original record key, unchanged (normally a region)."),
        },
        "Records that could not become events, with the reason in their headers.",
        ("Consumers dead-letter records", "Operators inspect records"),
    )
    add_channel(
        "alerts",
        ALERTS,
        {
            "name": "alert",
            "title": "Alert",
            "summary": "A firing or resolved alert.",
            "contentType": CONTENT_TYPE,
            "payload": {"$ref": _COMPONENT_REF.format(model="Alert")},
            "bindings": _key_binding("The alert fingerprint."),
        },
        "Alerts raised by the stream processors.",
        ("The stream worker publishes alerts", "The dispatcher and subscribers receive alerts"),
    )

    add_channel(
        "subscriptions",
        SUBSCRIPTIONS,
        {
            "name": "subscription",
            "title": "Subscription",
            "summary": "The latest state of one push subscription; a tombstone deletes it.",
            "contentType": CONTENT_TYPE,
            "payload": {"$ref": _COMPONENT_REF.format(model="SubscriptionRecord")},
            "bindings": _key_binding("The subscription id."),
        },
        "Push subscriptions (compacted). Webhook records carry signing secrets: restrict access.",
        ("The CLI and the dispatcher API write subscriptions", "Dispatchers read subscriptions"),
    )
    add_channel(
        "deliveries",
        DELIVERIES,
        {
            "name": "delivery-attempt",
            "title": "Delivery attempt",
            "summary": "One attempt to deliver one alert to one subscription, and its outcome.",
            "contentType": CONTENT_TYPE,
            "payload": {"$ref": _COMPONENT_REF.format(model="DeliveryAttempt")},
            "bindings": _key_binding("The subscription id."),
        },
        "The delivery log: every attempt the dispatcher makes.",
        ("The dispatcher logs attempts", "Operators read the delivery log"),
    )
    add_channel(
        "deliveryDeadLetter",
        DELIVERY_DEAD_LETTER,
        {
            "name": "delivery-dead-letter",
            "title": "Undeliverable alert",
            "summary": "The body of a delivery whose attempts ran out, with the reason.",
            "contentType": CONTENT_TYPE,
            "headers": _text(
                "dlq_reason, dlq_subscription, dlq_alert_id, dlq_attempts, "
                "webhook-id and webhook-sequence, as UTF-8 text.",
                type="object",
            ),
            "payload": _text("The webhook body (or Alertmanager payload) that was not delivered."),
            "bindings": _key_binding("The subscription id."),
        },
        "Deliveries given up on: after the retry schedule, or an endpoint that answered 410.",
        ("The dispatcher dead-letters deliveries", "Operators inspect them"),
    )
    add_channel(
        "dispatchState",
        DISPATCH_STATE,
        {
            "name": "dispatch-state",
            "title": "Dispatcher state",
            "summary": "Pending deliveries and per-subscription cursors (internal).",
            "contentType": CONTENT_TYPE,
            "payload": {"type": "object", "description": "Internal to the dispatcher."},
            "bindings": _key_binding(
                "p/<subscription>/<sequence>, c/<subscription> or a/<subscription>/<fingerprint>."
            ),
        },
        "The dispatcher's durable state (compacted); not an interface.",
        ("The dispatcher writes its state", "The dispatcher reloads its state"),
    )

    add_channel(
        "checkpoints",
        CHECKPOINTS,
        {
            "name": "checkpoint",
            "title": "Signed checkpoint",
            "summary": "A Merkle root (RFC 6962) over every stored event so far, Ed25519-signed.",
            "contentType": CONTENT_TYPE,
            "payload": _text(
                "version, seq, created_at, tree_size, root, peaks, ends (per-partition end "
                "offsets), ranges (what each partition added), previous (SHA-256 of the "
                "previous checkpoint), key_id and signature; see 'disruptfeed audit verify'.",
                type="object",
            ),
            "bindings": _key_binding(
                "Always 'checkpoint' (one partition keeps the chain in order)."
            ),
        },
        "The audit chain of signed checkpoints, kept forever in one partition.",
        ("'disruptfeed audit checkpoint' publishes checkpoints", "Auditors verify them"),
    )

    components: dict[str, Any] = {"schemas": schemas, "messages": messages}
    if settings.sasl_mechanism is not None:
        description = f"SASL {settings.sasl_mechanism} over {settings.security_protocol}."
        scheme = {"type": _SASL[settings.sasl_mechanism], "description": description}
        components["securitySchemes"] = {"sasl": scheme}
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Disruption Feed",
            "version": f"{SCHEMA_VERSION}.0.0",
            "description": (
                "A real-time, typed Kafka feed of platform-abuse disruptions: one topic per event "
                "type, the record value the event's JSON document, the key its actor region, the "
                "headers its CloudEvents 1.0 attributes (binary mode). Undecodable records go to "
                f"the dead-letter topic. Every topic name starts with '{settings.topic_prefix}.'."
            ),
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": _servers(settings),
        "channels": channels,
        "operations": operations,
        "components": components,
    }


def export(directory: Path, settings: Settings) -> list[Path]:
    """Write every JSON Schema and the AsyncAPI document to a directory.

    Args:
        directory: Where to write; created (with parents) if missing.
        settings: Passed to :func:`asyncapi_document`.

    Returns:
        The written paths: ``<event type>.schema.json`` for each event type, then
        ``asyncapi.json``. Files are indented JSON with sorted keys and a trailing newline.
    """
    documents = {f"{event_type}.schema.json": doc for event_type, doc in json_schemas().items()}
    documents["asyncapi.json"] = asyncapi_document(settings)
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, document in documents.items():
        path = directory / name
        path.write_bytes(
            orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
        )
        written.append(path)
    return written
