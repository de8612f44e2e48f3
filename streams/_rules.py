"""Alert rules: their TOML configuration, and the engine that turns counts into alerts.

Two families of rule. *Window* rules (``threshold``, ``surge``) compare rolling counts from the
:class:`~streams._windows.CountStore` with a limit, per region and event type. *Immediate* rules
(``new-network``, ``report``) raise an alert for a single event and hold it for a fixed time.

The engine follows Alertmanager's lifecycle (:class:`~streams._alerts.Lifecycle`) in stream time
only, so a replay of the same history in the same order produces the same alerts, ids included.
"""

from __future__ import annotations

__all__ = [
    "AlertEngine",
    "NewNetworkRule",
    "ReportRule",
    "Rule",
    "RuleSet",
    "SurgeRule",
    "ThresholdRule",
    "load_rules",
]

import tomllib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Final, Literal, NamedTuple
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from disruptfeed.errors import ConfigurationError
from schemas._events import EventBase, NetworkIdentified, ReportReleased
from schemas._types import Attribution, EventType, Region, Slug
from streams._alerts import (
    Alert,
    Episode,
    Lifecycle,
    Severity,
    fingerprint,
    merge_samples,
    to_ms,
)
from streams._windows import WINDOWS, CountStore, WindowName

_RULE_CONFIG = ConfigDict(frozen=True, extra="forbid")
_DEFAULT_FILE: Final = "rules.toml"


class _RuleBase(BaseModel):
    model_config = _RULE_CONFIG

    name: Slug = Field(description="Unique in the rule set; part of every alert's fingerprint.")


class ThresholdRule(_RuleBase):
    """Fires while a region's count of one event type in ``window`` is at least ``threshold``."""

    kind: Literal["threshold"] = "threshold"
    event_type: EventType
    window: WindowName
    threshold: int = Field(ge=1)
    regions: tuple[Region, ...] = Field(default=(), description="Empty: every region.")
    severity: Severity


class SurgeRule(_RuleBase):
    """Fires while a window's count is at least ``max(min_count, factor x baseline average)``.

    The baseline average is the count in the ``baseline`` period just before the window, divided
    by how many windows fit in it: the count the window would hold at the usual rate.
    """

    kind: Literal["surge"] = "surge"
    event_type: EventType
    window: WindowName
    baseline: Literal["24h", "7d"]
    factor: float = Field(gt=1)
    min_count: int = Field(ge=1)
    severity: Severity

    @field_validator("baseline")
    @classmethod
    def _longer_than_window(cls, value: WindowName, info: ValidationInfo) -> WindowName:
        window = info.data.get("window")  # absent when the window itself was invalid
        if window is not None and WINDOWS[value] <= WINDOWS[window]:
            raise ValueError(f"must be longer than window {window!r}")
        return value


class NewNetworkRule(_RuleBase):
    """Fires at once for each identified network with one of ``attributions``; ends after hold."""

    kind: Literal["new-network"] = "new-network"
    attributions: tuple[Attribution, ...] = Field(default=("state-linked",), min_length=1)
    hold: WindowName = "24h"
    severity: Severity


class ReportRule(_RuleBase):
    """An informational alert for each released report; ends after ``hold``."""

    kind: Literal["report"] = "report"
    hold: WindowName = "24h"
    severity: Severity = "info"


Rule = Annotated[
    ThresholdRule | SurgeRule | NewNetworkRule | ReportRule, Field(discriminator="kind")
]
"""Any rule, told apart by its ``kind``."""
_Window = ThresholdRule | SurgeRule

_RULE_ADAPTER: TypeAdapter[Rule] = TypeAdapter(Rule)
_MODELS: Final[dict[str, type[BaseModel]]] = {
    m.model_fields["kind"].default: m
    for m in (ThresholdRule, SurgeRule, NewNetworkRule, ReportRule)
}
_KINDS: Final = tuple(_MODELS)


class RuleSet(BaseModel):
    """Every rule the worker evaluates, and how often a still-firing alert is sent again."""

    model_config = _RULE_CONFIG

    rules: tuple[Rule, ...]
    repeat_interval: WindowName | None = Field(
        default="24h", description="Stream time between repeats of a firing alert; None: never."
    )

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
        dupes = sorted(name for name, n in Counter(r.name for r in rules).items() if n > 1)
        if dupes:
            raise ValueError(f"rule names must be unique; repeated: {', '.join(dupes)}")
        return rules

    @property
    def history_ms(self) -> int:
        """How much event time the count store must keep for these rules."""
        spans = [WINDOWS[r.window] for r in self.rules if isinstance(r, ThresholdRule)]
        spans += [WINDOWS[r.window] + WINDOWS[r.baseline] for r in self.rules if r.kind == "surge"]
        return max(spans, default=0)


def _packaged_rules() -> bytes:
    try:
        return resources.files("streams").joinpath(_DEFAULT_FILE).read_bytes()
    except NotADirectoryError:
        # An editable install made while streams/ had no __init__.py maps it as a namespace
        # package whose __path__ holds a path-hook entry that Python 3.11's reader rejects.
        return Path(__file__).with_name(_DEFAULT_FILE).read_bytes()


def load_rules(path: Path | None = None) -> RuleSet:
    """Read a TOML rule file: ``[[rule]]`` tables and an optional top-level ``repeat_interval``.

    Args:
        path: the file; None reads the packaged default, ``streams/rules.toml``.

    Raises:
        ConfigurationError: the file cannot be read, is not TOML, or a rule is invalid. The
            message names the file, the rule (1-based index and name) and the field.
    """
    if path is None:
        origin = f"streams/{_DEFAULT_FILE}"
        data = _packaged_rules()
    else:
        origin = str(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigurationError(f"{origin}: cannot read: {exc.strerror or exc}") from None
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigurationError(f"{origin}: not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{origin}: invalid TOML: {exc}") from None
    problems = [
        f"{origin}: unknown key {key!r}; a rule file holds [[rule]] tables and repeat_interval"
        for key in sorted(set(doc) - {"rule", "repeat_interval"})
    ]
    raw_rules = doc.get("rule", [])
    if not isinstance(raw_rules, list) or not all(isinstance(r, dict) for r in raw_rules):
        problems.append(f"{origin}: 'rule' must be an array of tables, written [[rule]]")
        raw_rules = []
    rules: list[Rule] = []
    first_index: dict[str, int] = {}
    for index, raw in enumerate(raw_rules, start=1):
        name = raw.get("name")
        where = f"{origin}: rule {index} ({name!r})" if isinstance(name, str) else ""
        where = where or f"{origin}: rule {index} (unnamed)"
        try:
            rule = _RULE_ADAPTER.validate_python(raw)
        except ValidationError as exc:
            problems += [f"{where}: {problem}" for problem in _describe(exc, raw)]
            continue
        if rule.name in first_index:
            problems.append(f"{where}: name: duplicate of rule {first_index[rule.name]}")
        first_index.setdefault(rule.name, index)
        rules.append(rule)
    repeat = doc.get("repeat_interval", "24h")
    if repeat not in (*WINDOWS, "never"):
        problems.append(
            f"{origin}: repeat_interval: must be '1h', '24h', '7d' or 'never', got {repeat!r}"
        )
    if problems:
        raise ConfigurationError("\n".join(problems))
    # TOML has no null: "never" is how a file turns repeats off.
    return RuleSet(rules=tuple(rules), repeat_interval=None if repeat == "never" else repeat)


def _describe(exc: ValidationError, raw: Mapping[str, Any]) -> list[str]:
    """One ``field: reason`` line per pydantic error, in the words of the rule file."""
    kind = raw.get("kind")
    out = []
    for err in exc.errors(include_url=False):
        loc = list(err["loc"])
        if loc and loc[0] in _KINDS:  # the discriminated union puts the tag first
            loc = loc[1:]
        field = ".".join(str(part) for part in loc)
        kinds = ", ".join(repr(k) for k in _KINDS)
        match err["type"]:
            case "union_tag_invalid":
                field, reason = "kind", f"unknown kind {kind!r}; expected one of {kinds}"
            case "union_tag_not_found":
                field, reason = "kind", f"missing; every rule needs a kind, one of {kinds}"
            case "missing":
                reason = "required field is missing"
            case "extra_forbidden":
                keys = ", ".join(_MODELS[str(kind)].model_fields)
                reason = f"unknown key; a {kind!r} rule takes {keys}"
            case "value_error":
                reason = str(err["ctx"]["error"])
            case _:
                given = err["input"]
                shown = "" if isinstance(given, dict | list) else f", got {given!r}"
                reason = f"{err['msg']}{shown}"
        out.append(f"{field}: {reason}")
    return out


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
        for rule in self.rules.rules:
            if isinstance(rule, ThresholdRule | SurgeRule):
                if rule.event_type != event.type or not _covers(rule, event.region):
                    continue
                fp = self._window_fingerprint(rule.name, event.region, event.type)
                reading = _read(rule, event.region, store, now_ms)
                if reading.value < reading.required and fp not in self._life.episodes:
                    continue  # nothing firing and nothing to start: no episode to build
                samples = merge_samples(sample_ids, [event.event_id])
                out += self._life.step(_episode(rule, labels, reading, now_ms, samples), now_ms, fp)
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
        self, store: CountStore, now_ms: int, where: Callable[[str, str], bool] | None = None
    ) -> list[Alert]:
        """Re-evaluate firing episodes at stream time ``now_ms``: repeats and resolutions.

        Args:
            store: the counts.
            now_ms: stream time.
            where: ``(region, event_type) -> bool``; only matching episodes are re-evaluated
                (those whose stream time ``now_ms`` is). None: every episode.
        """
        self._check(store)
        out: list[Alert] = []
        for fp, ep in self._life.ordered(where):
            rule = self._by_name.get(ep.rule)
            if isinstance(rule, ThresholdRule | SurgeRule) and _same_series(rule, ep):
                if ep.last_eval_ms == now_ms:
                    # Evaluated at this stream time already, and a series' count only changes
                    # with its own events, each of which re-evaluates it: the result would match.
                    continue
                reading = _read(rule, ep.labels["region"], store, now_ms)
                out += self._life.step(_episode(rule, ep.labels, reading, now_ms, ()), now_ms, fp)
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


def _read(rule: _Window, region: str, store: CountStore, now: int) -> _Reading:
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
    rule: _Window, labels: dict[str, str], reading: _Reading, now: int, samples: Sequence[UUID]
) -> Episode:
    """A window rule's reading at ``now``, as an episode that would start now."""
    value, required = reading.value, reading.required
    head = f"{labels['region']} {rule.event_type}: {value} in {rule.window}"
    return Episode(
        rule=rule.name,
        kind=rule.kind,
        severity=rule.severity,
        labels=labels,
        starts_ms=now,
        last_sent_ms=now,
        last_eval_ms=now,
        window=rule.window,
        value=value,
        threshold=required,
        baseline=reading.baseline,
        sample_ids=tuple(samples),
        summary=(
            f"{head} >= {reading.how}" if value >= required else f"{head} < {reading.how}; resolved"
        ),
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


def _covers(rule: _Window, region: str) -> bool:
    return isinstance(rule, SurgeRule) or not rule.regions or region in rule.regions


def _same_series(rule: _Window, ep: Episode) -> bool:
    """Whether a restored episode still belongs to ``rule`` as configured now."""
    now = (rule.kind, rule.window, rule.event_type)
    return now == (ep.kind, ep.window, ep.labels["event_type"]) and _covers(
        rule, ep.labels["region"]
    )
