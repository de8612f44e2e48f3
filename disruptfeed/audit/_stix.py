"""A STIX 2.1 bundle of replayed events, for threat-intelligence platforms (OpenCTI, MISP, TAXII).

The mapping:

- each publisher (``source``) is an ``identity`` of class ``system``, and the ``created_by_ref``
  of what its events produce;
- each network (``network_id``) is an ``intrusion-set``; a ``network.identified`` event gives
  its name (the operation name), description and first-seen time;
- each actor (its name, or its region and attribution when unnamed) is a ``threat-actor``, and
  the network is ``attributed-to`` it;
- each actor region other than ``unknown`` is a ``location`` (its ISO 3166-1 country): the
  network ``originates-from`` it and the actor is ``located-at`` it;
- an ``account.disrupted`` event is a ``sighting`` of the network, ``count`` the accounts
  disrupted, sighted on the platform (an ``identity`` of class ``organization``);
- a ``report.released`` event is a ``report`` whose ``object_refs`` are its networks.

Every id is a UUIDv5 of what it names (the event id for events, the name for shared objects),
and ``created``/``modified`` come from the events, never from the clock: the same events give
the same bytes. Each object made from one event names it in an external reference
(``source_name`` ``disruptfeed``, ``external_id`` the event id).
"""

from __future__ import annotations

__all__ = ["dumps_bundle", "stix_bundle"]

import datetime as dt
from collections.abc import Iterable
from typing import Any
from uuid import UUID, uuid5

import orjson

from schemas import UNKNOWN_REGION, AccountDisrupted, Event, NetworkIdentified, ReportReleased

_NAMESPACE = UUID("2f1c6a52-7d0b-5a55-9a43-6d2b8f0c4e11")
"""Fixed: changing it would change every exported id."""

Obj = dict[str, Any]

_ACTOR_TYPES = {
    "state-linked": "nation-state",
    "likely state-linked": "nation-state",
    "criminal": "crime-syndicate",
    "commercial": "criminal",
    "likely commercial": "criminal",
}
"""STIX's threat-actor-type-ov for our attributions; anything else is ``unknown``."""
_CONFIDENCE = {"low": 15, "moderate": 50, "high": 85}
"""ICD 203 words on STIX's 0-100 scale (its Appendix A: low 15, moderate 50, high 85)."""


def _id(kind: str, name: str) -> str:
    """A deterministic id in UUIDv4 form, as STIX wants for domain objects.

    Version 4 only says the other bits carry no structure; here they are a UUIDv5 hash of the
    name, with the version nibble set to 4, so the same name always gets the same id.
    """
    hashed = uuid5(_NAMESPACE, f"{kind}:{name}")
    return f"{kind}--{UUID(bytes=hashed.bytes, version=4)}"


def _ts(when: dt.datetime) -> str:
    """STIX timestamps: UTC, ``Z``, millisecond precision."""
    utc = when.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


class _Bundle:
    """Objects by id; shared ones keep their earliest ``created`` and latest ``modified``."""

    def __init__(self) -> None:
        self.objects: dict[str, Obj] = {}

    def shared(self, obj: Obj, when: dt.datetime) -> str:
        """Add or widen a shared object (identity, location, intrusion-set); returns its id."""
        stamp = _ts(when)
        current = self.objects.get(obj["id"])
        if current is None:
            self.objects[obj["id"]] = {**obj, "created": stamp, "modified": stamp}
        else:
            for key, value in obj.items():
                current.setdefault(key, value)
            current["created"] = min(current["created"], stamp)
            current["modified"] = max(current["modified"], stamp)
        return str(obj["id"])

    def add(self, obj: Obj) -> None:
        self.objects[obj["id"]] = obj


def _common(event: Event, kind: str, creator: str) -> Obj:
    stamp = _ts(event.recorded_at)
    return {
        "type": kind,
        "spec_version": "2.1",
        "id": _id(kind, str(event.event_id)),
        "created": stamp,
        "modified": stamp,
        "created_by_ref": creator,
        "external_references": [{"source_name": "disruptfeed", "external_id": str(event.event_id)}],
    }


def _network(bundle: _Bundle, event: Event, network_id: str, creator: str) -> str:
    obj: Obj = {
        "type": "intrusion-set",
        "spec_version": "2.1",
        "id": _id("intrusion-set", network_id),
        "created_by_ref": creator,
        "aliases": [network_id],
    }
    if isinstance(event, NetworkIdentified):
        # The identifying event names it; set before setdefault keeps a placeholder name.
        current = bundle.objects.get(obj["id"])
        if current is not None:
            current["name"] = event.operation_name
        obj["name"] = event.operation_name
        obj["description"] = (
            f"{event.activity} network; targets: {', '.join(event.targets) or 'not given'}"
        )
        obj["first_seen"] = _ts(event.occurred_at)
    else:
        obj["name"] = network_id
    set_id = bundle.shared(obj, event.recorded_at)
    actor = event.actor
    label = actor.name or f"{actor.attribution} actor ({actor.region})"
    threat: Obj = {
        "type": "threat-actor",
        "spec_version": "2.1",
        "id": _id("threat-actor", label),
        "name": label,
        "created_by_ref": creator,
        "threat_actor_types": [_ACTOR_TYPES.get(actor.attribution, "unknown")],
        "confidence": _CONFIDENCE[actor.confidence],
    }
    actor_id = bundle.shared(threat, event.recorded_at)
    _relate(bundle, set_id, "attributed-to", actor_id, creator, event.recorded_at)
    if actor.region != UNKNOWN_REGION:
        place = bundle.shared(
            {
                "type": "location",
                "spec_version": "2.1",
                "id": _id("location", actor.region),
                "name": actor.region,
                "country": actor.region,
            },
            event.recorded_at,
        )
        _relate(bundle, set_id, "originates-from", place, creator, event.recorded_at)
        _relate(bundle, actor_id, "located-at", place, creator, event.recorded_at)
    return set_id


def _relate(
    bundle: _Bundle, source: str, kind: str, target: str, creator: str, when: dt.datetime
) -> None:
    bundle.shared(
        {
            "type": "relationship",
            "spec_version": "2.1",
            "id": _id("relationship", f"{source}:{kind}:{target}"),
            "relationship_type": kind,
            "source_ref": source,
            "target_ref": target,
            "created_by_ref": creator,
        },
        when,
    )


def _identity(bundle: _Bundle, name: str, kind: str, when: dt.datetime) -> str:
    return bundle.shared(
        {
            "type": "identity",
            "spec_version": "2.1",
            "id": _id("identity", f"{kind}:{name}"),
            "name": name,
            "identity_class": kind,
        },
        when,
    )


def stix_bundle(events: Iterable[Event]) -> Obj:
    """The STIX 2.1 bundle of ``events`` (in their order), as a JSON-ready dict."""
    bundle = _Bundle()
    event_ids: list[str] = []
    for event in events:
        event_ids.append(str(event.event_id))
        creator = _identity(bundle, event.source, "system", event.recorded_at)
        if isinstance(event, NetworkIdentified):
            _network(bundle, event, event.network_id, creator)
        elif isinstance(event, AccountDisrupted):
            set_id = _network(bundle, event, event.network_id, creator)
            platform = _identity(bundle, event.platform, "organization", event.recorded_at)
            seen = _ts(event.occurred_at)
            bundle.add(
                {
                    **_common(event, "sighting", creator),
                    "sighting_of_ref": set_id,
                    "where_sighted_refs": [platform],
                    "count": min(event.accounts, 999_999_999),
                    "first_seen": seen,
                    "last_seen": seen,
                    "description": f"{event.accounts} accounts disrupted: {event.reason}",
                }
            )
        elif isinstance(event, ReportReleased):
            refs = [_network(bundle, event, n, creator) for n in event.networks] or [creator]
            bundle.add(
                {
                    **_common(event, "report", creator),
                    "name": event.title,
                    "published": _ts(dt.datetime.combine(event.published, dt.time(), dt.UTC)),
                    "report_types": ["threat-actor"],
                    "object_refs": refs,
                    "external_references": [
                        {"source_name": "disruptfeed", "external_id": str(event.event_id)},
                        {
                            "source_name": event.source,
                            "url": event.url,
                            "external_id": event.report_id,
                        },
                    ],
                }
            )
    return {
        "type": "bundle",
        "id": _id("bundle", ",".join(event_ids)),
        "objects": list(bundle.objects.values()),
    }


def dumps_bundle(bundle: Obj) -> bytes:
    """The bundle as JSON (sorted keys, a trailing newline): the same bundle, the same bytes."""
    return orjson.dumps(bundle, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2) + b"\n"
