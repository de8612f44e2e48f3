"""The alert engine: rules evaluated on events and counts, one alert lifecycle per fingerprint.

The engine follows Alertmanager's lifecycle (:class:`~streams._alerts.Lifecycle`) in stream time
only, so a replay of the same history in the same order produces the same alerts, ids included.
It runs for every counted event, so it avoids work whose result is known: an episode is built
only when one is firing or starting, and each event type sees only the rules that concern it.
"""

from __future__ import annotations

__all__ = ["AlertEngine"]

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, get_args
from uuid import UUID

from disruptfeed.errors import ConfigurationError
from schemas._events import EventBase, NetworkIdentified, ReportReleased
from schemas._types import EventType
from streams._alerts import Alert, Episode, Lifecycle, fingerprint, merge_samples, to_ms
from streams._rules import (
    NewNetworkRule,
    ReportRule,
    Rule,
    RuleSet,
    SurgeRule,
    ThresholdRule,
    WindowRule,
)
from streams._windows import WINDOWS, CountStore


class AlertEngine:
    """Evaluates ``rules`` on events and counts, one alert lifecycle per fingerprint.

    Every ``now_ms`` is stream time (the watermark of the region's partition), used as given.
    """

    def __init__(self, rules: RuleSet) -> None:
        self.rules = rules
        self._by_name: dict[str, Rule] = {rule.name: rule for rule in rules.rules}
        self._life = Lifecycle(WINDOWS[rules.repeat_interval] if rules.repeat_interval else None)
        self._fingerprints: dict[tuple[str, str, str], str] = {}
        self._history_ms = rules.history_ms  # checked per event; the rules never change
        # Each event type's rules, in file order: most rules concern one type only.
        self._for_type: dict[str, tuple[Rule, ...]] = {
            event_type: tuple(r for r in rules.rules if _concerns(r, event_type))
            for event_type in get_args(EventType)
        }

    def on_event(
        self, event: EventBase, store: CountStore, now_ms: int, sample_ids: Sequence[UUID] = ()
    ) -> list[Alert]:
        """Evaluate the rules one event concerns, once it has been added to ``store``.

        Args:
            event: the event just counted.
            store: the counts, already including the event.
            now_ms: stream time.
            sample_ids: recent event ids of the event's region and type, oldest first; alerts
                carry the last few, with this event's id.
        """
        self._check(store)
        labels = {"region": event.region, "event_type": event.type}
        out: list[Alert] = []
        for rule in self._for_type[event.type]:  # only rules of this event's type
            if isinstance(rule, ThresholdRule | SurgeRule):
                if not _covers(rule, event.region):
                    continue
                fp = self._window_fingerprint(rule.name, event.region, event.type)
                reading = _read(rule, event.region, store, now_ms)
                live = self._life.episodes.get(fp)
                if live is not None:  # one Episode built, not a fresh one and its merge
                    samples = merge_samples(sample_ids, [event.event_id])
                    merged = merge_samples(live.sample_ids, samples)
                    seen = _observed(live, rule, reading, now_ms, merged)
                    out += self._life.advance(seen, now_ms, fp)
                elif reading.value >= reading.required:  # else nothing to start
                    samples = merge_samples(sample_ids, [event.event_id])
                    fresh = _episode(rule, labels, reading, now_ms, samples)
                    out += self._life.step(fresh, now_ms, fp)
            elif (held := _held(rule, event, now_ms)) is not None:
                out += self._life.step(held, now_ms)
        return out

    def _window_fingerprint(self, rule: str, region: str, event_type: str) -> str:
        # A window rule's labels are its region and event type: hash them once per series.
        key = (rule, region, event_type)
        fp = self._fingerprints.get(key)
        if fp is None:
            labels = {"region": region, "event_type": event_type}
            fp = self._fingerprints[key] = fingerprint(rule, labels)
        return fp

    def sweep(
        self,
        store: CountStore,
        now_ms: int,
        where: Callable[[str, str], bool] | None = None,
        event_type: str | None = None,
    ) -> list[Alert]:
        """Re-evaluate firing episodes at stream time ``now_ms``: repeats and resolutions.

        Args:
            store: the counts.
            now_ms: stream time.
            where: ``(region, event_type) -> bool``; only matching episodes are re-evaluated
                (those whose stream time ``now_ms`` is). None: every episode.
            event_type: only episodes of this event type (None: of every type).
        """
        self._check(store)
        out: list[Alert] = []
        for fp, ep in self._life.ordered(where, event_type):
            rule = self._by_name.get(ep.rule)
            if isinstance(rule, ThresholdRule | SurgeRule) and _same_series(rule, ep):
                if ep.last_eval_ms == now_ms:
                    # Evaluated at this stream time already, and a series' count only changes
                    # with its own events, each of which re-evaluates it: the result would match.
                    continue
                reading = _read(rule, ep.labels["region"], store, now_ms)
                out += self._life.advance(
                    _observed(ep, rule, reading, now_ms, ep.sample_ids), now_ms, fp
                )
            elif rule is not None and rule.kind == ep.kind and ep.hold_until_ms is not None:
                out += self._life.touch(fp, now_ms)
            else:
                # The rule was removed or changed since the episode began (state restored under a
                # new rule file): end the episode rather than leave a firing alert dangling.
                out.append(self._life.end(fp, now_ms, "resolved: rule removed or changed"))
        return out

    def active(self) -> list[Alert]:
        """Every firing alert, as last evaluated."""
        return self._life.active()

    def state(self) -> dict[str, dict[str, Any]]:
        """The engine's memory as plain JSON data: fingerprint -> episode (one table row each)."""
        return self._life.state()

    def episode_state(self, fingerprint: str) -> dict[str, Any] | None:
        """One :meth:`state` entry, or None when no episode of that fingerprint is live."""
        return self._life.episode_state(fingerprint)

    def take_changed(self) -> list[str]:
        """Fingerprints of the episodes changed since the last call (states not built)."""
        return self._life.take_changed()

    def restore(self, state: Mapping[str, Mapping[str, Any]]) -> None:
        """Replace the engine's memory with a :meth:`state` result (ValueError if malformed)."""
        self._life.restore(state)

    def _check(self, store: CountStore) -> None:
        if store.retain_ms < (need := self._history_ms):
            msg = f"the count store keeps {store.retain_ms} ms of event time; the rules need {need}"
            raise ConfigurationError(msg)


class _Reading(NamedTuple):
    """A window rule read off the counts at one stream time."""

    value: int
    required: float
    baseline: float | None
    how: str


def _read(rule: WindowRule, region: str, store: CountStore, now: int) -> _Reading:
    """The count a window rule sees at ``now``, and the count it requires."""
    size = WINDOWS[rule.window]
    value = store.count(region, rule.event_type, size, now)
    if isinstance(rule, ThresholdRule):
        return _Reading(value, float(rule.threshold), None, f"{rule.threshold}")
    # The baseline period ends where the window starts, so a burst is not its own baseline.
    before = store.count(region, rule.event_type, WINDOWS[rule.baseline], now - size)
    baseline = before * size / WINDOWS[rule.baseline]
    required = max(float(rule.min_count), rule.factor * baseline)
    how = f"{required:g} ({rule.factor:g} x {baseline:.3g}/{rule.window} over {rule.baseline})"
    return _Reading(value, required, baseline, how)


def _episode(
    rule: WindowRule, labels: dict[str, str], reading: _Reading, now: int, samples: Sequence[UUID]
) -> Episode:
    """A window rule's reading at ``now``, as an episode that would start now."""
    return Episode(
        rule=rule.name,
        kind=rule.kind,
        severity=rule.severity,
        labels=labels,
        starts_ms=now,
        last_sent_ms=now,
        last_eval_ms=now,
        window=rule.window,
        value=reading.value,
        threshold=reading.required,
        baseline=reading.baseline,
        sample_ids=tuple(samples),
        summary=_summary(rule, labels["region"], reading),
    )


def _summary(rule: WindowRule, region: str, reading: _Reading) -> str:
    head = f"{region} {rule.event_type}: {reading.value} in {rule.window}"
    if reading.value >= reading.required:
        return f"{head} >= {reading.how}"
    return f"{head} < {reading.how}; resolved"


def _observed(
    live: Episode, rule: WindowRule, reading: _Reading, now: int, samples: tuple[UUID, ...]
) -> Episode:
    """``live.observe(_episode(...))`` built at once: what a live episode becomes at ``now``.

    ``samples`` are the merged sample ids (``merge_samples(live.sample_ids, new ones)``).
    """
    return Episode(
        rule=rule.name,
        kind=rule.kind,
        severity=rule.severity,
        labels=live.labels,
        starts_ms=live.starts_ms,
        last_sent_ms=live.last_sent_ms,
        last_eval_ms=now,
        window=rule.window,
        value=reading.value,
        threshold=reading.required,
        baseline=reading.baseline,
        hold_until_ms=live.hold_until_ms,
        repeats=live.repeats,
        sample_ids=samples,
        summary=_summary(rule, live.labels["region"], reading),
    )


def _held(rule: NewNetworkRule | ReportRule, event: EventBase, now: int) -> Episode | None:
    """An immediate rule's episode for ``event`` (held from its event time), or None."""
    labels = {"region": event.region, "event_type": event.type}
    if isinstance(rule, NewNetworkRule):
        who = event.actor.attribution
        if not isinstance(event, NetworkIdentified) or who not in rule.attributions:
            return None
        labels["network_id"] = event.network_id
        name = f"{event.network_id!r} ({event.operation_name})"
        summary = f"{event.region} {event.type}: new {who} network {name}"
    elif isinstance(event, ReportReleased):
        labels["report_id"] = event.report_id
        title = event.title if len(event.title) <= 160 else event.title[:159] + "…"
        summary = f"report released: {title} ({event.report_id})"
    else:
        return None
    start = to_ms(event.occurred_at)
    return Episode(
        rule=rule.name,
        kind=rule.kind,
        severity=rule.severity,
        labels=labels,
        starts_ms=start,
        last_sent_ms=now,
        last_eval_ms=now,
        hold_until_ms=start + WINDOWS[rule.hold],
        sample_ids=(event.event_id,),
        summary=summary,
    )


def _concerns(rule: Rule, event_type: str) -> bool:
    """Whether events of ``event_type`` can make ``rule`` fire."""
    if isinstance(rule, ThresholdRule | SurgeRule):
        return rule.event_type == event_type
    if isinstance(rule, NewNetworkRule):
        return event_type == "network.identified"
    return event_type == "report.released"


def _covers(rule: WindowRule, region: str) -> bool:
    return isinstance(rule, SurgeRule) or not rule.regions or region in rule.regions


def _same_series(rule: WindowRule, ep: Episode) -> bool:
    """Whether a restored episode still belongs to ``rule`` as configured now."""
    now = (rule.kind, rule.window, rule.event_type)
    return now == (ep.kind, ep.window, ep.labels["event_type"]) and _covers(
        rule, ep.labels["region"]
    )
