"""Alert rules: their TOML configuration, validated with errors that name file, rule and field.

Two families of rule. *Window* rules (``threshold``, ``surge``) compare rolling counts from the
:class:`~streams._windows.CountStore` with a limit, per region and event type. *Immediate* rules
(``new-network``, ``report``) raise an alert for a single event and hold it for a fixed time.

:class:`streams._engine.AlertEngine` evaluates them.
"""

from __future__ import annotations

__all__ = [
    "NewNetworkRule",
    "ReportRule",
    "Rule",
    "RuleSet",
    "SurgeRule",
    "ThresholdRule",
    "WindowRule",
    "load_rules",
]

import re
import tomllib
from collections import Counter
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Final, Literal

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
from schemas._types import Attribution, EventType, Region, Slug
from streams._alerts import (
    Severity,
)
from streams._windows import WINDOWS, WindowName

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
WindowRule = ThresholdRule | SurgeRule
"""A rule over rolling counts (as opposed to an immediate one)."""

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
    doc = _parse(origin, data)
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


def _parse(origin: str, data: bytes) -> dict[str, Any]:
    """The TOML document in ``data``, or a ConfigurationError naming ``origin`` and why not."""
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigurationError(f"{origin}: not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{origin}: invalid TOML: {exc}") from None
    except ValueError:
        # Not a TOMLDecodeError: tomllib hands a decimal integer to int(), which refuses more
        # than 4,300 digits (sys.get_int_max_str_digits).
        where = _position(data, re.search(rb"[0-9_]{4301,}", data))
        raise ConfigurationError(f"{origin}: invalid TOML: integer too long{where}") from None
    except RecursionError:
        # tomllib reads nested arrays and inline tables recursively.
        raise ConfigurationError(
            f"{origin}: invalid TOML: arrays or inline tables nested too deeply"
        ) from None


def _position(data: bytes, found: re.Match[bytes] | None) -> str:
    """`` (at line L, column C)`` of a match in a file, as tomllib words positions; or ''."""
    if found is None:
        return ""
    start = found.start()
    line = data.count(b"\n", 0, start) + 1
    column = len(data[data.rfind(b"\n", 0, start) + 1 : start].decode("utf-8")) + 1
    return f" (at line {line}, column {column})"


def _describe(exc: ValidationError, raw: Mapping[str, Any]) -> list[str]:
    """One ``field: reason`` line per pydantic error, in the words of the rule file."""
    kind = raw.get("kind")
    out = []
    for err in exc.errors(include_url=False):
        loc = list(err["loc"])
        if loc and loc[0] in _KINDS:  # the discriminated union puts the tag first
            loc = loc[1:]
        field = ".".join(str(part) for part in loc)
        if not field.isprintable():  # an unknown key "a\nb" would break the line in two
            field = repr(field)
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
