"""The AsyncAPI document against the official AsyncAPI 3.0.0 schema.

Integration, not unit: the schema comes from the npm package ``@asyncapi/specs`` (fetched once
with npm over the network, then cached; see tests/_asyncapi_spec.py).
"""

from __future__ import annotations

import copy

import pytest
from jsonschema import Draft7Validator  # type: ignore[import-untyped, unused-ignore]

from disruptfeed.settings import Settings
from schemas import asyncapi_document
from tests._asyncapi_spec import asyncapi_validator

pytestmark = pytest.mark.integration


def _settings(**overrides: object) -> Settings:
    fields: dict[str, object] = {
        "bootstrap_servers": "kafka.example.net:9092",
        "topic_prefix": "exporttest",
        "partitions": 6,
        "replication_factor": 3,
        **overrides,
    }
    return Settings(**fields)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def official() -> Draft7Validator:
    return asyncapi_validator()


@pytest.mark.parametrize(
    "settings",
    [
        _settings(),
        _settings(bootstrap_servers=None),
        _settings(
            bootstrap_servers="b1.example.net:9093, b2.example.net:9093",
            security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-512",
        ),
    ],
    ids=["plaintext", "embedded", "sasl-ssl-two-brokers"],
)
def test_asyncapi_document_is_valid_against_official_schema(
    official: Draft7Validator, settings: Settings
) -> None:
    doc = asyncapi_document(settings)
    errors = [f"{list(e.absolute_path)}: {e.message[:300]}" for e in official.iter_errors(doc)]
    assert errors == []
    assert doc["asyncapi"] == "3.0.0"
    hosts = [server["host"] for server in doc["servers"].values()]
    assert hosts == [host.strip() for host in settings.bootstrap.split(",")]


def test_official_schema_rejects_a_broken_channel(official: Draft7Validator) -> None:
    doc = asyncapi_document(_settings())
    assert official.is_valid(doc)
    broken = copy.deepcopy(doc)
    broken["channels"]["accountDisrupted"]["address"] = 42
    errors = list(official.iter_errors(broken))
    assert [list(e.absolute_path) for e in errors] == [["channels", "accountDisrupted"]]


def test_official_schema_rejects_a_bare_ref_as_kafka_key(official: Draft7Validator) -> None:
    # Why the export wraps key references in allOf: a bare {"$ref"} matches both alternatives
    # of the Kafka message binding's oneOf (Reference and Schema) and so fails it.
    doc = asyncapi_document(_settings())
    kafka = doc["components"]["messages"]["accountDisrupted"]["bindings"]["kafka"]
    kafka["key"] = {"$ref": "#/components/schemas/Region"}
    assert not official.is_valid(doc)
