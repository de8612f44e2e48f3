"""Alert rules: loading and validating rule files, the alert lifecycle, and the alert codec."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final
from uuid import UUID

import orjson
import pytest
from pydantic import ValidationError

from disruptfeed.errors import ConfigurationError
from disruptfeed.sample import build_sample
from schemas import Actor, EventBase
from streams import WINDOWS, Alert, AlertEngine, Counted, CountStore, RuleSet, load_rules
from streams._alerts import (
    Episode,
    Lifecycle,
    alert_headers,
    alert_key,
    decode_alert,
    derive_alert_id,
    encode_alert,
    fingerprint,
    merge_samples,
    to_ms,
)
from streams._rules import NewNetworkRule, ReportRule, SurgeRule, ThresholdRule
from tests.factories import T0, account, network, report

pytestmark = pytest.mark.unit

ACCOUNTS: Final = "account.disrupted"
RU_ACCOUNTS = {"region": "RU", "event_type": ACCOUNTS}


class Feed:
    """Drives an engine as the worker does: count the event, then evaluate at stream time."""

    def __init__(self, rules: RuleSet, grace_ms: int = WINDOWS["1h"]) -> None:
        self.store = CountStore(grace_ms=grace_ms)
        self.engine = AlertEngine(rules)
        self.counted: list[Counted] = []
        self.recent: dict[tuple[str, str], list[UUID]] = {}

    def __call__(self, event: EventBase, *, sweep: bool = False) -> list[Alert]:
        source, occurred = f"{event.type}:0", to_ms(event.occurred_at)
        late = self.store.classify(source, occurred)
        accounts = getattr(event, "accounts", 1)
        self.counted.append(Counted(event.type, event.region, occurred, accounts, late, source))
        self.store.add(self.counted[-1])
        recent = self.recent.setdefault((event.region, event.type), [])
        recent.append(event.event_id)
        now = self.store.now_ms
        alerts = self.engine.on_event(event, self.store, now, recent[-10:])
        return alerts + self.engine.sweep(self.store, now) if sweep else alerts

    def sweep_at(self, when: dt.datetime) -> list[Alert]:
        return self.engine.sweep(self.store, to_ms(when))


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def write(tmp_path: Path, text: str) -> Path:
    (path := tmp_path / "rules.toml").write_text(text, encoding="utf-8")
    return path


THRESHOLD = (
    '\n[[rule]]\nname = "burst"\nkind = "threshold"\nevent_type = "account.disrupted"\n'
    'window = "1h"\nthreshold = 5\nseverity = "critical"\n'
)
SURGE = (
    '[[rule]]\nname = "surge"\nkind = "surge"\nevent_type = "account.disrupted"\n'
    'window = "24h"\nbaseline = "24h"\nfactor = 3.0\nmin_count = 8\nseverity = "warning"\n'
)


def test_default_rules_load() -> None:
    rules = load_rules()
    assert rules.repeat_interval == "24h"
    assert [(r.name, r.kind, r.severity) for r in rules.rules] == [
        ("burst-accounts", "threshold", "critical"),
        ("surge-accounts", "surge", "warning"),
        ("new-state-network", "new-network", "critical"),
        ("report-released", "report", "info"),
    ]
    burst, surge, state, _ = rules.rules
    assert isinstance(burst, ThresholdRule)
    assert (burst.event_type, burst.window, burst.threshold) == (ACCOUNTS, "1h", 5)
    assert isinstance(surge, SurgeRule)
    assert (surge.window, surge.baseline, surge.factor, surge.min_count) == ("24h", "7d", 3.0, 8)
    assert isinstance(state, NewNetworkRule)
    assert state.attributions == ("state-linked", "likely state-linked")
    assert rules.history_ms == WINDOWS["24h"] + WINDOWS["7d"]  # the surge window and baseline
    assert load_rules(Path(__file__).parents[2] / "streams" / "rules.toml") == rules


# (id, text to replace in THRESHOLD, replacement, what the message says after "rule 1 ('burst'): ")
RULE_CASES = [
    ("unknown-kind", '"threshold"', '"spike"', "kind: unknown kind 'spike'; expected one of"),
    ("missing-kind", 'kind = "threshold"', "", "kind: missing; every rule needs a kind"),
    ("missing-field", "threshold = 5", "", "threshold: required field is missing"),
    ("unknown-key", "window =", "windw =", "windw: unknown key; a 'threshold' rule takes name,"),
    ("bad-window", '"1h"', '"2h"', "window: Input should be '1h', '24h' or '7d', got '2h'"),
    ("bad-region", "threshold = 5", 'threshold = 5\nregions = ["ru"]', "regions.0: region codes"),
    ("bad-threshold", "threshold = 5", "threshold = 0", "threshold: Input should be greater"),
]
FILE_CASES = [
    ("baseline", THRESHOLD + SURGE, "rule 2 ('surge'): baseline: must be longer than window '24h'"),
    ("duplicate", THRESHOLD + THRESHOLD, "rule 2 ('burst'): name: duplicate of rule 1"),
    ("unnamed", THRESHOLD.replace('"burst"', "7"), "rule 1 (unnamed): name: Input should be a"),
    ("top-level-key", "alerts = 1\n" + THRESHOLD, "unknown key 'alerts'; a rule file holds"),
    ("repeat", 'repeat_interval = "1d"\n', "repeat_interval: must be '1h', '24h', '7d' or"),
    ("not-tables", "rule = 5\n", "'rule' must be an array of tables, written [[rule]]"),
    ("toml-syntax", THRESHOLD.replace("window =", "window"), "invalid TOML: Expected '=' after"),
    ("toml-line", THRESHOLD.replace("window =", "window"), "key/value pair (at line 6, column 8)"),
]
CASES = [
    *(
        (c, THRESHOLD.replace(old, new), f"rule 1 ('burst'): {says}")
        for c, old, new, says in RULE_CASES
    ),
    *FILE_CASES,
]


@pytest.mark.parametrize(("case", "text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bad_rule_files_name_file_rule_and_field(
    tmp_path: Path, case: str, text: str, expected: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigurationError) as caught:
        load_rules(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert expected in str(caught.value)


def test_other_configuration_errors(tmp_path: Path) -> None:
    text = THRESHOLD.replace("threshold = 5", "threshold = 0\nregions = [1]")
    with pytest.raises(ConfigurationError) as caught:
        load_rules(write(tmp_path, text))
    prefix = f"{tmp_path / 'rules.toml'}: rule 1 ('burst'): "  # every problem, one per line
    assert str(caught.value).splitlines() == [
        prefix + "threshold: Input should be greater than or equal to 1, got 0",
        prefix + "regions.0: Input should be a valid string, got 1",
    ]
    with pytest.raises(ConfigurationError, match=r"absent\.toml: cannot read: No such file"):
        load_rules(tmp_path / "absent.toml")
    (rule,) = threshold_rules().rules  # rule sets built in code check names too
    with pytest.raises(ValidationError, match="rule names must be unique; repeated: burst"):
        RuleSet(rules=(rule, rule))
    short = CountStore(grace_ms=0, retain_ms=WINDOWS["7d"])  # shorter than 24h + 7d of surge
    with pytest.raises(ConfigurationError, match="the rules need 691200000"):
        AlertEngine(load_rules()).on_event(account(), short, to_ms(T0))


def threshold_rules(n: int = 3, repeat: Any = "1h") -> RuleSet:
    rule = ThresholdRule(
        name="burst", event_type=ACCOUNTS, window="1h", threshold=n, severity="info"
    )
    return RuleSet(rules=(rule,), repeat_interval=repeat)


def feed_minutes(feed: Feed, *minutes: float) -> list[Alert]:
    return [alert for m in minutes for alert in feed(account(minutes=m))]


def test_threshold_fires_once_repeats_after_interval_and_resolves_once() -> None:
    feed = Feed(threshold_rules())
    first = [account(minutes=m) for m in (0, 10, 20)]
    assert feed(first[0]) == feed(first[1]) == []
    (fired,) = feed(first[2])
    fp = fingerprint("burst", RU_ACCOUNTS)
    assert (fired.status, fired.kind, fired.severity) == ("firing", "threshold", "info")
    assert (fired.rule, fired.fingerprint) == ("burst", fp)
    assert (fired.region, fired.event_type, fired.window) == ("RU", ACCOUNTS, "1h")
    assert (fired.value, fired.threshold, fired.baseline) == (3, 3.0, None)
    assert (fired.starts_at, fired.evaluated_at, fired.ends_at) == (at(20), at(20), None)
    assert fired.alert_id == derive_alert_id(fp, "firing", at(20))
    assert fired.sample_event_ids == tuple(e.event_id for e in first)
    assert fired.summary == "RU account.disrupted: 3 in 1h >= 3"
    assert feed.engine.active() == [fired]
    # Still holding: nothing, however many events arrive or sweeps run, until repeat_interval.
    assert feed_minutes(feed, 30, 40) == feed.sweep_at(at(50)) == []
    assert feed_minutes(feed, 75) == []  # 55 minutes since it was sent
    (repeat,) = feed_minutes(feed, 81)  # 61 minutes: the same alert again, re-evaluated
    # A repeat is the same episode (fingerprint, start) but its own message, with its own id.
    assert (repeat.status, repeat.fingerprint, repeat.starts_at) == ("firing", fp, at(20))
    assert (repeat.repeat, repeat.alert_id) == (1, derive_alert_id(fp, "firing", at(20), 1))
    assert repeat.alert_id != fired.alert_id
    assert (repeat.evaluated_at, repeat.value) == (at(81), 4)  # (21, 81]: 30, 40, 75, 81
    assert feed_minutes(feed, 90) == []  # the repeat restarted the interval
    # Windows are (now - 1h, now]: minute 75 still counts at 134 and is gone at 135.
    assert feed.sweep_at(at(101)) == feed.sweep_at(at(134)) == []
    (resolved,) = feed.sweep_at(at(135))
    assert (resolved.status, resolved.value, resolved.starts_at) == ("resolved", 2, at(20))
    assert resolved.alert_id == derive_alert_id(fp, "resolved", at(20)) != fired.alert_id
    assert resolved.ends_at == resolved.evaluated_at == at(135)
    assert resolved.summary == "RU account.disrupted: 2 in 1h < 3; resolved"
    assert feed.sweep_at(at(200)) == feed.engine.active() == []
    # The condition starting again is a new episode, with new ids.
    (again,) = feed_minutes(feed, 300, 301, 302)
    assert (again.fingerprint, again.starts_at) == (fp, at(302))
    assert again.alert_id not in {fired.alert_id, resolved.alert_id}


def test_each_repeat_of_a_long_episode_has_its_own_number_and_id() -> None:
    """Found profiling (issue 16): observe() dropped the count, so every repeat was repeat 1
    with one alert id, and a subscriber deduplicating by id kept only the first repeat."""
    feed = Feed(threshold_rules())
    feed_minutes(feed, 0, 10, 20)  # fires at 20
    repeats = [a for m in range(25, 400, 5) for a in feed_minutes(feed, m, m + 1, m + 2)]
    assert [a.repeat for a in repeats] == list(range(1, len(repeats) + 1))
    assert len(repeats) >= 5
    assert len({a.alert_id for a in repeats}) == len(repeats)


def test_never_repeat_and_samples_are_the_last_ten_ids(tmp_path: Path) -> None:
    rules = load_rules(write(tmp_path, 'repeat_interval = "never"\n' + THRESHOLD))
    assert rules.repeat_interval is None
    feed = Feed(rules)
    events = [account(minutes=m) for m in range(0, 3000, 10)]
    assert [a.status for e in events for a in feed(e, sweep=True)] == ["firing"]
    (alert,) = feed.engine.active()
    assert alert.sample_event_ids == tuple(e.event_id for e in events[-10:])


def test_window_rules_watch_their_regions_and_type_and_sweeps_can_be_limited() -> None:
    (rule,) = threshold_rules(n=1).rules
    feed = Feed(RuleSet(rules=(rule.model_copy(update={"regions": ("IR", "CN")}),)))
    assert feed(account("RU")) == feed(network("IR")) == feed(report()) == []
    assert [a.region for a in feed(account("IR")) + feed(account("CN"))] == ["IR", "CN"]
    resolved = feed.engine.sweep(feed.store, to_ms(at(60)), where=lambda region, _: region == "IR")
    assert [(a.region, a.status) for a in resolved] == [("IR", "resolved")]
    assert [a.region for a in feed.engine.active()] == ["CN"]


def surge_rules() -> RuleSet:
    update = {"window": "1h", "baseline": "24h", "min_count": 4}  # and the default factor, 3
    return RuleSet(rules=(load_rules().rules[1].model_copy(update=update),))


def test_surge_fires_against_a_quiet_baseline_and_resolves_as_the_window_slides() -> None:
    feed = Feed(surge_rules())
    (alert,) = feed_minutes(feed, -12 * 60, 0, 5, 10, 15)  # one event in the baseline day
    # Baseline 1/24 per hour; 3x that is under min_count, so min_count is what was needed.
    assert (alert.kind, alert.value, alert.threshold, alert.starts_at) == ("surge", 4, 4.0, at(15))
    assert alert.baseline == pytest.approx(1 / 24)
    assert alert.summary == "RU account.disrupted: 4 in 1h >= 4 (3 x 0.0417/1h over 24h)"
    assert feed.sweep_at(at(59)) == []  # (-1, 59]: all four
    (resolved,) = feed.sweep_at(at(60))  # (0, 60]: three, and minute 0 is baseline now
    assert (resolved.status, resolved.value, resolved.ends_at) == ("resolved", 3, at(60))


def test_surge_does_not_fire_against_a_busy_baseline() -> None:
    feed = Feed(surge_rules())
    # 47 events, one every 30 minutes, in the day before the burst: about 2 an hour.
    assert feed_minutes(feed, *range(-1470, -89, 30)) == []
    assert feed_minutes(feed, 0, 5, 10, 15, 20) == []  # 5 >= min_count, < 3 x 47/24 = 5.875
    (alert,) = feed_minutes(feed, 25)  # 6 in (-35, 25]; all 47 in the baseline (-1475, -35]
    assert alert.value == 6
    assert alert.baseline == pytest.approx(47 / 24)
    assert alert.threshold == pytest.approx(3 * 47 / 24)


def state_network(region: str, network_id: str, attribution: Any = "state-linked") -> EventBase:
    actor = Actor(region=region, attribution=attribution)
    return network(region, actor=actor, network_id=network_id)


def new_network_rules(hold: Any = "24h") -> RuleSet:
    return RuleSet(rules=(NewNetworkRule(name="new-net", hold=hold, severity="critical"),))


def test_new_network_fires_at_once_for_state_linked_only_and_resolves_after_hold() -> None:
    feed = Feed(new_network_rules())
    assert feed(state_network("CN", "spamouflage", "likely state-linked")) == []
    assert feed(state_network("KH", "scam-farm", "criminal")) == []
    event = state_network("RU", "doppelganger")
    (alert,) = feed(event)
    labels = {"region": "RU", "event_type": "network.identified", "network_id": "doppelganger"}
    assert alert.fingerprint == fingerprint("new-net", labels)
    assert (alert.kind, alert.status, alert.severity) == ("new-network", "firing", "critical")
    assert (alert.region, alert.event_type, alert.starts_at) == ("RU", "network.identified", T0)
    assert (alert.window, alert.value, alert.threshold, alert.baseline) == (None,) * 4
    assert alert.sample_event_ids == (event.event_id,)
    summary = "RU network.identified: new state-linked network 'doppelganger' (Spamouflage)"
    assert alert.summary == summary
    (other,) = feed(state_network("RU", "bad-grammar"))  # another network, another episode
    assert feed.sweep_at(at(24 * 60 - 1)) == []
    resolved = {a.fingerprint: a for a in feed.sweep_at(at(24 * 60))}
    assert set(resolved) == {alert.fingerprint, other.fingerprint}
    ended = resolved[alert.fingerprint]
    assert (ended.status, ended.ends_at) == ("resolved", at(24 * 60))
    assert ended.alert_id == derive_alert_id(alert.fingerprint, "resolved", T0)


def test_new_network_hold_extends_and_late_events_resolve_at_once() -> None:
    feed = Feed(new_network_rules())
    (alert,) = feed(state_network("RU", "doppelganger"))
    again = state_network("RU", "doppelganger").model_copy(update={"occurred_at": at(12 * 60)})
    older = state_network("RU", "doppelganger").model_copy(update={"occurred_at": at(6 * 60)})
    assert feed(again) == feed(older) == []  # the older mention does not shorten the hold
    # Held until 12h + 24h now; at 24h it is still firing, so the daily repeat goes out.
    (repeat,) = feed.sweep_at(at(24 * 60))
    assert (repeat.status, repeat.fingerprint, repeat.repeat) == ("firing", alert.fingerprint, 1)
    assert repeat.alert_id != alert.alert_id
    assert feed.sweep_at(at(30 * 60)) == []
    (resolved,) = feed.sweep_at(at(36 * 60))
    assert resolved.alert_id == derive_alert_id(alert.fingerprint, "resolved", T0)
    assert resolved.ends_at == at(36 * 60)
    mentions = {alert.sample_event_ids[0], again.event_id, older.event_id}
    assert set(resolved.sample_event_ids) == mentions
    # A network identified after its hold (its partition lags) fires and resolves at once.
    feed = Feed(new_network_rules(hold="1h"), grace_ms=WINDOWS["7d"])
    feed(account(minutes=600))  # another partition has moved stream time to T0 + 10h
    alerts = feed(state_network("RU", "old-news"))  # at T0: on time for its own partition
    assert [(a.status, a.ends_at) for a in alerts] == [("firing", None), ("resolved", at(60))]
    assert feed.engine.active() == []


def test_report_alert_is_info_and_resolves_after_hold() -> None:
    feed = Feed(RuleSet(rules=(ReportRule(name="reports", hold="1h"),)))
    (alert,) = feed(report(title="Disrupting malicious uses of AI", report_id="openai-2025-06"))
    labels = {"region": "unknown", "event_type": "report.released", "report_id": "openai-2025-06"}
    assert alert.fingerprint == fingerprint("reports", labels)
    assert (alert.kind, alert.severity, alert.status) == ("report", "info", "firing")
    assert alert.summary == "report released: Disrupting malicious uses of AI (openai-2025-06)"
    (resolved,) = feed.sweep_at(at(60))
    assert (resolved.status, resolved.severity, resolved.ends_at) == ("resolved", "info", at(60))
    assert resolved.summary.endswith("; resolved: hold ended")


def replay(events: Sequence[EventBase], crash_at: int | None = None) -> list[Alert]:
    feed, alerts = Feed(load_rules()), []
    for index, event in enumerate(events):
        if index == crash_at:
            # As the worker does: state kept as JSON; a new process rebuilds counts, restores.
            saved = orjson.loads(orjson.dumps(feed.engine.state()))
            assert saved, "some alerts should be firing at the crash"
            fresh = Feed(load_rules())
            assert fresh.store.restore(feed.counted) == index
            fresh.counted, fresh.recent = feed.counted, feed.recent
            fresh.engine.restore(saved)
            assert fresh.engine.active() == feed.engine.active()
            feed = fresh
        alerts += feed(event, sweep=True)
    return alerts


def test_alert_ids_and_fingerprints_are_deterministic() -> None:
    events = build_sample()
    first, second = replay(events), replay(events)
    assert {a.kind for a in first} == {"threshold", "surge", "new-network", "report"}
    assert [encode_alert(a) for a in first] == [encode_alert(a) for a in second]
    # One id per message: (fingerprint, status, start, repeat); repeats share the fingerprint.
    keys = {(a.fingerprint, a.status, a.starts_at, a.repeat) for a in first}
    assert len({a.alert_id for a in first}) == len(keys) == len(first)
    assert len({(a.fingerprint, a.status, a.starts_at) for a in first}) < len(first)
    expected = "4411a5e9dad31325ae66f06249b08faeb99e4e9601d4b8622c3577599bb02be6"
    assert fingerprint("burst", {"region": "RU", "event_type": ACCOUNTS}) == expected
    assert fingerprint("burst", {"event_type": ACCOUNTS, "region": "RU"}) == expected
    assert fingerprint("burst", {"region": "IR", "event_type": ACCOUNTS}) != expected
    assert fingerprint("other", RU_ACCOUNTS) != expected


def test_state_survives_a_restart_mid_stream() -> None:
    events = build_sample()[:600]
    assert replay(events, crash_at=300) == replay(events)


def test_restored_state_is_checked_and_episodes_of_removed_rules_resolve() -> None:
    feed = Feed(threshold_rules(n=1))
    (fired,) = feed(account())
    (entry,) = feed.engine.state().values()
    with pytest.raises(ValueError, match="is not the fingerprint of its labels"):
        feed.engine.restore({"0" * 64: entry})
    other = AlertEngine(RuleSet(rules=(ReportRule(name="reports"),)))
    other.restore(feed.engine.state())
    (resolved,) = other.sweep(feed.store, to_ms(at(5)))
    assert (resolved.status, resolved.fingerprint) == ("resolved", fired.fingerprint)
    assert resolved.summary.endswith("resolved: rule removed or changed")
    assert other.active() == []


def test_encode_decode_round_trip_key_headers_and_checks() -> None:
    feed = Feed(threshold_rules(n=1))
    (alert,) = feed(account(minutes=0.5))
    (resolved,) = feed.sweep_at(at(61))
    for sent in (alert, resolved):
        assert decode_alert(encode_alert(sent)) == sent
        assert alert_key(sent) == sent.fingerprint.encode()
    doc = orjson.loads(encode_alert(alert))
    assert list(doc) == sorted(doc)
    assert (doc["alert_id"], doc["starts_at"]) == (str(alert.alert_id), "2026-03-01T12:00:30+00:00")
    assert dict(alert_headers(alert)) == {
        "ce_specversion": b"1.0",
        "ce_id": str(alert.alert_id).encode(),
        "ce_source": b"urn:disruptfeed:worker",
        "ce_type": b"io.disruptfeed.alert.firing.v1",
        "ce_time": b"2026-03-01T12:00:30+00:00",
        "ce_subject": b"RU",
        "content-type": b"application/json",
    }
    assert dict(alert_headers(resolved))["ce_type"] == b"io.disruptfeed.alert.resolved.v1"
    assert dict(alert_headers(resolved))["ce_time"] == b"2026-03-01T13:01:00+00:00"
    with pytest.raises(ValidationError, match="is not the derived id"):
        decode_alert(orjson.dumps({**doc, "alert_id": "00000000-0000-4000-8000-000000000000"}))
    with pytest.raises(ValidationError, match="ends_at is set exactly when"):
        decode_alert(orjson.dumps({**doc, "ends_at": doc["starts_at"]}))
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        decode_alert(orjson.dumps({**doc, "labels": {}}))


@pytest.mark.parametrize("repeat_ms", [None, WINDOWS["1h"]])
@pytest.mark.parametrize("minutes", [0, 30, 59, 60, 61, 24 * 60 - 1, 24 * 60, 25 * 60])
def test_touch_matches_a_full_step(repeat_ms: int | None, minutes: int) -> None:
    # touch() is the sweep's shortcut for held episodes; it must decide exactly as step() does.
    held = Episode(
        rule="new-network",
        kind="new-network",
        severity="warning",
        labels={"region": "RU", "event_type": "network.identified", "network_id": "x"},
        starts_ms=0,
        last_sent_ms=0,
        last_eval_ms=0,
        hold_until_ms=WINDOWS["24h"],
        sample_ids=(UUID(int=1),),
        summary="RU network.identified: new state-linked network 'x' (X)",
    )
    fp = fingerprint(held.rule, held.labels)
    now = minutes * 60_000
    fast, full = Lifecycle(repeat_ms), Lifecycle(repeat_ms)
    fast.episodes[fp] = full.episodes[fp] = held
    assert fast.touch(fp, now) == full.step(held.replace(last_eval_ms=now), now, fp)
    assert fast.episodes == full.episodes


@pytest.mark.parametrize(("value", "baseline"), [(12, None), (2, None), (40, 3.5), (1, 3.5)])
def test_a_live_episode_built_at_once_equals_the_fresh_one_observed(
    value: int, baseline: float | None
) -> None:
    """The engine's fast path for live episodes (issue 16) builds what observe() would."""
    import uuid

    from streams._engine import _episode, _observed, _Reading

    rule = ThresholdRule(
        name="burst", event_type=ACCOUNTS, window="1h", threshold=5, severity="info"
    )
    labels = {"region": "RU", "event_type": ACCOUNTS}
    old_ids = tuple(uuid.uuid4() for _ in range(4))
    new_ids = (old_ids[-1], uuid.uuid4(), uuid.uuid4())
    live = _episode(rule, labels, _Reading(9, 5.0, None, "5"), 1_000, old_ids).replace(
        last_sent_ms=1_500, repeats=3
    )
    reading = _Reading(value, 5.0, baseline, "5")
    expected = live.observe(_episode(rule, dict(labels), reading, 9_000, new_ids))
    got = _observed(live, rule, reading, 9_000, merge_samples(live.sample_ids, new_ids))
    assert got == expected


def test_a_sweep_of_one_event_type_visits_exactly_its_live_episodes() -> None:
    """The lifecycle's per-type index (issue 16) agrees with a scan of all episodes."""
    events = build_sample()
    feed = Feed(load_rules())
    types = sorted({e.type for e in events})
    checked_live = 0
    for index, event in enumerate(events):
        if index == len(events) // 2:  # a restore rebuilds the index from the state alone
            feed.engine.restore(orjson.loads(orjson.dumps(feed.engine.state())))
        feed(event, sweep=index % 7 == 0)
        if index % 50 == 0:
            life = feed.engine._life
            for event_type in types:

                def of_type(_: str, kind: str, wanted: str = event_type) -> bool:
                    return kind == wanted

                scanned = life.ordered(of_type)
                assert life.ordered(event_type=event_type) == scanned
            assert sum(len(life.ordered(event_type=t)) for t in types) == len(life.episodes)
            checked_live += bool(life.episodes)
    assert checked_live > 10, "the sample should keep episodes live at many checks"
