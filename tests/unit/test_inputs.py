"""JSON Lines reading and the sample data set."""

from __future__ import annotations

import collections

import pytest

from disruptfeed.sample import SampleSpec, build_sample, load_networks, load_reports, slug
from producers import read_events
from schemas import AccountDisrupted, NetworkIdentified, ReportReleased, codec
from tests.factories import account, network

pytestmark = pytest.mark.unit


def test_each_line_is_judged_on_its_own() -> None:
    good1, good2 = account(), network()
    lines = [
        codec.encode(good1) + b"\n",
        b"\n",
        b'{"type": "account.disrupted", "event_id": \n',
        codec.encode(good2) + b"\r\n",
        b"\xfe\xff\n",
    ]
    results = list(read_events(lines))
    assert [r.line for r in results] == [1, 3, 4, 5]
    assert results[0].event == good1
    assert results[2].event == good2
    assert results[1].error is not None
    assert "EOF while parsing" in results[1].error.reason
    assert results[3].error is not None
    assert "not valid UTF-8" in results[3].error.reason
    assert results[1].describe("in.jsonl").startswith("in.jsonl:3: Invalid JSON")


def test_describe_lists_every_problem_of_a_line() -> None:
    doc = codec.to_dict(account())
    doc["accounts"] = -1
    doc["actor"]["region"] = "QQ"
    [result] = list(read_events([codec.dumps(doc)]))
    text = result.describe("f")
    assert "f:1: accounts: Input should be greater than or equal to 1" in text
    assert "f:1: actor.region: " in text


def test_sample_is_deterministic_and_labelled() -> None:
    first = build_sample()
    second = build_sample()
    assert first == second
    other = build_sample(SampleSpec(seed=1))
    assert {e.event_id for e in other} != {e.event_id for e in first}
    accounts = [e for e in first if isinstance(e, AccountDisrupted)]
    assert accounts
    assert all(e.synthetic for e in accounts)
    assert not any(e.synthetic for e in first if not isinstance(e, AccountDisrupted))


def test_sample_reflects_the_public_reports() -> None:
    events = build_sample()
    reports = load_reports()
    networks = load_networks()
    released = [e for e in events if isinstance(e, ReportReleased)]
    identified = [e for e in events if isinstance(e, NetworkIdentified)]
    assert len(released) == len(reports)
    assert len(identified) == len(networks)
    assert {str(e.published) for e in released} == {r["published"] for r in reports}
    assert collections.Counter(e.region for e in identified) == collections.Counter(
        n["actor_region"] for n in networks
    )
    counts = collections.Counter(type(e) for e in events)
    assert counts[AccountDisrupted] == 20 * len(networks)
    assert events == sorted(events, key=lambda e: (e.occurred_at, str(e.event_id)))


def test_sample_events_survive_the_codec() -> None:
    events = build_sample(SampleSpec(accounts_per_network=2))
    sizes = [len(codec.encode(e)) for e in events]
    assert all(codec.decode(codec.encode(e)) == e for e in events)
    assert max(sizes) < 4_096


def test_slug() -> None:
    assert slug("STORM-2035 (recidivist, 2025)") == "storm-2035-recidivist-2025"
    name = "China\u2019s \u201cCyber Special Operations\u201d"
    assert slug(name) == "china-s-cyber-special-operations"
    assert slug("!!!") == "unnamed"
