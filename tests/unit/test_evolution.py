"""Schema evolution: producers write the current version only; readers accept newer ones."""

from __future__ import annotations

import orjson
import pytest
from pydantic import ValidationError

from disruptfeed.errors import SchemaValidationError
from schemas import AccountDisrupted, codec, json_schemas
from tests.factories import account

pytestmark = pytest.mark.unit


def _v2() -> tuple[dict[str, object], bytes]:
    v1 = codec.to_dict(account("RU", accounts=7))
    actor = {**v1["actor"], "handle": "@future"}
    v2 = {**v1, "schema_version": 2, "confidence_score": 0.9, "actor": actor}
    return v1, orjson.dumps(v2)


def test_a_reader_takes_a_v2_record_and_ignores_its_new_fields() -> None:
    v1, data = _v2()
    event = codec.decode_record(data, [("ce_type", b"io.disruptfeed.account.disrupted.v2")])
    assert isinstance(event, AccountDisrupted)
    assert event.schema_version == 2
    assert event.accounts == 7
    assert event.region == "RU"
    assert str(event.event_id) == v1["event_id"]
    assert "confidence_score" not in event.model_dump()


def test_producers_stay_strict() -> None:
    v1, data = _v2()
    with pytest.raises(SchemaValidationError, match="schema_version"):
        codec.decode(data)  # what 'disruptfeed publish' validates lines with
    with pytest.raises(ValidationError, match="schema_version"):
        AccountDisrupted.model_validate({**v1, "schema_version": 2})
    # A current-version record with a field it does not define is broken, not newer.
    with pytest.raises(SchemaValidationError, match="surprise"):
        codec.decode_record(orjson.dumps({**v1, "surprise": 1}))


def test_the_json_schemas_say_readers_are_tolerant() -> None:
    for schema in (s for name, s in json_schemas().items() if name != "alert"):
        version = schema["properties"]["schema_version"]
        assert "ignore the fields they do not know" in version["description"]
        assert schema["additionalProperties"] is False  # what producers write
