"""The STIX 2.1 export: valid for the OASIS validator, deterministic, and a faithful mapping."""

from __future__ import annotations

import orjson
import pytest
from stix2validator import ValidationOptions, validate_string

from disruptfeed.audit._stix import dumps_bundle, stix_bundle
from schemas import Event
from tests.factories import account, network, report

pytestmark = pytest.mark.unit


def _events() -> list[Event]:
    return [
        network("IR", network_id="storm-2035", operation_name="Storm-2035"),
        account("IR", network_id="storm-2035", accounts=12),
        account("unknown", network_id="storm-2035", accounts=1),
        report(networks=("storm-2035",)),
        report(networks=()),
    ]


def _by_type(bundle: dict[str, object], kind: str) -> list[dict[str, object]]:
    objects = bundle["objects"]
    assert isinstance(objects, list)
    return [o for o in objects if o["type"] == kind]


def test_the_bundle_is_valid_stix_and_strict_mode_only_asks_for_url_hashes() -> None:
    data = dumps_bundle(stix_bundle(_events())).decode()
    assert validate_string(data).is_valid
    strict = validate_string(data, ValidationOptions(strict=True))
    findings = {str(e).split("{", 1)[1].split("}", 1)[0] for e in strict.errors}
    assert findings <= {"302"}  # a report's URL without a hash: we cannot hash a remote page


def test_the_same_events_give_the_same_bytes_and_ids_do_not_depend_on_the_clock() -> None:
    events = _events()
    assert dumps_bundle(stix_bundle(events)) == dumps_bundle(stix_bundle(list(events)))
    assert stix_bundle(events[:2])["id"] != stix_bundle(events)["id"]


def test_mapping_sightings_networks_locations_and_reports() -> None:
    events = _events()
    bundle = stix_bundle(events)
    [intrusion] = _by_type(bundle, "intrusion-set")
    assert intrusion["name"] == "Storm-2035"
    assert intrusion["aliases"] == ["storm-2035"]
    sightings = _by_type(bundle, "sighting")
    assert sorted(int(str(s["count"])) for s in sightings) == [1, 12]
    assert {s["sighting_of_ref"] for s in sightings} == {intrusion["id"]}
    [place] = _by_type(bundle, "location")  # "unknown" is no location
    assert place["country"] == "IR"
    actors = {str(a["name"]): a for a in _by_type(bundle, "threat-actor")}
    actor = next(a for name, a in actors.items() if name.endswith("(IR)"))
    links = {
        (r["source_ref"], r["relationship_type"], r["target_ref"])
        for r in _by_type(bundle, "relationship")
    }
    assert links >= {
        (intrusion["id"], "originates-from", place["id"]),
        (intrusion["id"], "attributed-to", actor["id"]),
        (actor["id"], "located-at", place["id"]),
    }
    reports = _by_type(bundle, "report")
    refs = sorted(len(r["object_refs"]) for r in reports)  # type: ignore[arg-type]
    assert refs == [1, 1]  # its network; with none, its publisher
    ids = [o["id"] for o in bundle["objects"]]
    assert len(ids) == len(set(ids))
    assert orjson.loads(dumps_bundle(bundle)) == bundle
