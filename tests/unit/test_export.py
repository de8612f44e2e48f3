from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

# Untyped unless types-jsonschema is installed (not a dev dependency yet).
from jsonschema import Draft202012Validator  # type: ignore[import-untyped, unused-ignore]

from disruptfeed.errors import SchemaValidationError
from disruptfeed.settings import Settings
from disruptfeed.topics import topic_specs
from schemas import (
    DLQ_HEADERS,
    EVENT_TYPES,
    ISO_3166_ALPHA2,
    EventBase,
    asyncapi_document,
    codec,
    encode_alert,
    export,
    json_schemas,
)
from tests._asyncapi_spec import asyncapi_schema, cache_path, document_validator
from tests.factories import account, network, report

pytestmark = pytest.mark.unit

MAKERS: list[Callable[..., EventBase]] = [account, network, report]


def _settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "bootstrap_servers": "kafka.example.net:9092",
        "topic_prefix": "exporttest",
        "partitions": 6,
        "replication_factor": 3,
        **overrides,
    }
    return Settings(_env_file=None, **values)


def _event_json(event: EventBase) -> dict[str, Any]:
    """The event as a subscriber sees it: the record value the codec writes, parsed."""
    doc: dict[str, Any] = orjson.loads(codec.encode(event))
    return doc


def _schema_validator(event: EventBase) -> Draft202012Validator:
    schema = json_schemas()[event.type]
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _codec_rejects(doc: dict[str, Any]) -> bool:
    try:
        codec.decode(orjson.dumps(doc))
    except SchemaValidationError:
        return True
    return False


# --- JSON Schemas ------------------------------------------------------------------------------


def test_one_schema_per_event_type_in_stable_order() -> None:
    schemas = json_schemas()
    types = [cls.model_fields["type"].default for cls in EVENT_TYPES]
    assert list(schemas) == [*types, "alert"]


def test_alert_schema_accepts_encoded_alerts() -> None:
    from streams._alerts import Episode, fingerprint

    labels = {"region": "RU", "event_type": "account.disrupted"}
    episode = Episode(
        rule="r", kind="threshold", severity="critical", labels=labels, starts_ms=0,
        last_sent_ms=0, last_eval_ms=0, window="1h", value=5, threshold=5.0, summary="s",
    )  # fmt: skip
    schema = json_schemas()["alert"]
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    for alert in (
        episode.alert(fingerprint("r", labels), "firing"),
        episode.replace(repeats=2).alert(fingerprint("r", labels), "firing"),
        episode.alert(fingerprint("r", labels), "resolved", ends_ms=60_000),
    ):
        assert [e.message for e in validator.iter_errors(orjson.loads(encode_alert(alert)))] == []


@pytest.mark.parametrize("make", MAKERS)
def test_json_schema_is_valid_draft_2020_12_with_identity(make: Callable[..., EventBase]) -> None:
    event = make()
    schema = json_schemas()[event.type]
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"https://disruptfeed.dev/schemas/{event.type}.v1.json"
    assert schema["title"] == type(event).__name__
    assert type(event).topic_name in schema["description"]
    assert schema["additionalProperties"] is False
    assert "type" in schema["required"]


@pytest.mark.parametrize("make", MAKERS)
def test_json_schema_accepts_codec_output(make: Callable[..., EventBase]) -> None:
    event = make()
    errors = [e.message for e in _schema_validator(event).iter_errors(_event_json(event))]
    assert errors == []


@pytest.mark.parametrize("make", MAKERS)
def test_json_schema_and_codec_reject_unknown_field(make: Callable[..., EventBase]) -> None:
    event = make()
    doc = {**_event_json(event), "severity": "high"}
    errors = list(_schema_validator(event).iter_errors(doc))
    assert [e.validator for e in errors] == ["additionalProperties"]
    assert "severity" in errors[0].message
    assert _codec_rejects(doc)


@pytest.mark.parametrize("make", MAKERS)
@pytest.mark.parametrize("region", ["XX", "ru", "", "Unknown", "RUS"])
def test_json_schema_and_codec_reject_bad_region(
    make: Callable[..., EventBase], region: str
) -> None:
    event = make()
    doc = _event_json(event)
    doc["actor"] = {**doc["actor"], "region": region}
    errors = list(_schema_validator(event).iter_errors(doc))
    assert errors, f"region {region!r} passed the JSON Schema"
    assert all(list(e.absolute_path) == ["actor", "region"] for e in errors)
    assert _codec_rejects(doc)


def test_json_schema_region_enum_is_exactly_the_accepted_codes() -> None:
    actor = json_schemas()["account.disrupted"]["$defs"]["Actor"]
    assert set(actor["properties"]["region"]["enum"]) == ISO_3166_ALPHA2 | {"unknown"}


@pytest.mark.parametrize("make", MAKERS)
def test_json_schema_and_codec_require_type(make: Callable[..., EventBase]) -> None:
    event = make()
    doc = _event_json(event)
    del doc["type"]
    assert not _schema_validator(event).is_valid(doc)
    assert _codec_rejects(doc)


# --- AsyncAPI ----------------------------------------------------------------------------------


def test_spec_helper_fails_with_an_install_hint_without_npm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert cache_path() == tmp_path / "disruptfeed" / "asyncapi-specs-6.11.1" / "3.0.0.json"
    with pytest.raises(pytest.fail.Exception, match=r"install Node\.js and npm"):
        asyncapi_schema()
    assert not cache_path().exists()


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"not a local reference: {ref}"
    node: Any = doc
    for token in ref[2:].split("/"):
        part = token.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict), f"{ref} walks into a non-object"
        assert part in node, f"{ref} does not resolve (no {part!r})"
        node = node[part]
    return node


def test_server_and_security_follow_settings() -> None:
    plain = asyncapi_document(_settings())
    assert plain["servers"] == {
        "kafka": {
            "host": "kafka.example.net:9092",
            "protocol": "kafka",
            "description": "Kafka bootstrap address (security protocol PLAINTEXT).",
        }
    }
    assert "securitySchemes" not in plain["components"]
    secure = asyncapi_document(
        _settings(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-256")
    )
    assert secure["servers"]["kafka"]["protocol"] == "kafka-secure"
    assert secure["components"]["securitySchemes"]["sasl"]["type"] == "scramSha256"
    assert _resolve(secure, secure["servers"]["kafka"]["security"][0]["$ref"])["type"] == (
        "scramSha256"
    )


def test_one_channel_per_topic_with_its_configuration() -> None:
    settings = _settings()
    doc = asyncapi_document(settings)
    specs = {spec.name: spec for spec in topic_specs(settings)}
    addresses = {channel["address"]: channel for channel in doc["channels"].values()}
    assert set(addresses) == set(specs)
    assert len(addresses) == 10
    for address, channel in addresses.items():
        binding = channel["bindings"]["kafka"]
        assert binding["topic"] == address
        assert binding["partitions"] == specs[address].partitions
        assert binding["replicas"] == 3
        config = binding["topicConfiguration"]
        assert config["cleanup.policy"] == [specs[address].config["cleanup.policy"]]
        if "retention.ms" in specs[address].config:
            assert str(config["retention.ms"]) == specs[address].config["retention.ms"]
    for cls in EVENT_TYPES:
        assert settings.topic(cls.topic_name) in addresses


def test_every_local_reference_resolves() -> None:
    doc = asyncapi_document(_settings(sasl_mechanism="PLAIN"))
    refs = list(_refs(doc))
    assert len(refs) > 30
    for ref in refs:
        _resolve(doc, ref)


def test_operations_send_and_receive_each_channel_with_its_own_messages() -> None:
    doc = asyncapi_document(_settings())
    actions: dict[str, set[str]] = {name: set() for name in doc["channels"]}
    for name, operation in doc["operations"].items():
        channel_ref = operation["channel"]["$ref"]
        channel = channel_ref.removeprefix("#/channels/")
        actions[channel].add(operation["action"])
        assert name == operation["action"] + channel[0].upper() + channel[1:]
        for message in operation["messages"]:
            # AsyncAPI 3: an operation's messages are a subset of its channel's messages.
            assert message["$ref"].startswith(f"{channel_ref}/messages/")
            _resolve(doc, message["$ref"])
    assert actions == {name: {"send", "receive"} for name in doc["channels"]}


@pytest.mark.parametrize("make", MAKERS)
def test_message_schemas_describe_codec_records(make: Callable[..., EventBase]) -> None:
    event = make()
    doc = asyncapi_document(_settings())
    name = next(n for n, c in doc["channels"].items() if c["address"].endswith(event.topic_name))
    message = _resolve(doc, doc["channels"][name]["messages"][name]["$ref"])
    assert message["name"] == event.type
    assert message["contentType"] == "application/json"
    assert message["payload"]["$ref"].startswith("#/components/schemas/")
    pointer = f"/components/messages/{name}"

    payload = document_validator(doc, f"{pointer}/payload")
    value = _event_json(event)
    assert [e.message for e in payload.iter_errors(value)] == []
    assert not payload.is_valid({**value, "extra": True})
    assert not payload.is_valid({**value, "actor": {**value["actor"], "region": "XX"}})

    headers = {key: raw.decode() for key, raw in codec.headers(event)}
    header_validator = document_validator(doc, f"{pointer}/headers")
    assert [e.message for e in header_validator.iter_errors(headers)] == []
    assert not header_validator.is_valid({**headers, "ce_type": "io.disruptfeed.other.v1"})
    assert not header_validator.is_valid({k: v for k, v in headers.items() if k != "ce_id"})

    key = document_validator(doc, f"{pointer}/bindings/kafka/key")
    assert key.is_valid(codec.key(event).decode())
    assert not key.is_valid("XX")


def test_dead_letter_and_alert_messages() -> None:
    doc = asyncapi_document(_settings())
    assert doc["channels"]["deadLetter"]["address"] == "exporttest.dead-letter"
    assert doc["channels"]["alerts"]["address"] == "exporttest.alerts"
    dead = doc["components"]["messages"]["deadLetter"]
    assert tuple(dead["headers"]["properties"]) == DLQ_HEADERS
    assert set(dead["headers"]["required"]) < set(DLQ_HEADERS)
    assert dead["contentType"] == "application/octet-stream"
    headers = document_validator(doc, "/components/messages/deadLetter/headers")
    good = {
        "dlq_reason": "not valid UTF-8: byte 0 is 0xff",
        "dlq_topic": "exporttest.account-disrupted",
        "dlq_partition": "2",
        "dlq_offset": "1234",
        "dlq_field": "",
        "dlq_error_type": "DecodeError",
    }
    assert headers.is_valid(good)
    assert not headers.is_valid({**good, "dlq_offset": "-1"})
    alert = doc["components"]["messages"]["alerts"]["payload"]
    assert alert == {"$ref": "#/components/schemas/Alert"}
    assert "alert_id" in _resolve(doc, alert["$ref"])["properties"]


# --- export ------------------------------------------------------------------------------------


def test_export_writes_files_that_reload_equal(tmp_path: Path) -> None:
    settings = _settings()
    directory = tmp_path / "nested" / "contracts"
    paths = export(directory, settings)
    schemas = json_schemas()
    assert paths == [directory / f"{t}.schema.json" for t in schemas] + [
        directory / "asyncapi.json"
    ]
    assert sorted(p.name for p in directory.iterdir()) == sorted(p.name for p in paths)
    for event_type, schema in schemas.items():
        data = (directory / f"{event_type}.schema.json").read_bytes()
        assert orjson.loads(data) == schema
        assert data.endswith(b"}\n")
    data = (directory / "asyncapi.json").read_bytes()
    assert orjson.loads(data) == asyncapi_document(settings)
    assert (
        data
        == orjson.dumps(
            asyncapi_document(settings), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
        )
        + b"\n"
    )
    # Writing again is deterministic and overwrites in place.
    assert export(directory, settings) == paths
    assert (directory / "asyncapi.json").read_bytes() == data
