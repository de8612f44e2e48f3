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
    "RuleProblem",
    "RuleSet",
    "SurgeRule",
    "ThresholdRule",
    "WindowRule",
    "check_rules",
    "load_rules",
]

import re
import tomllib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class RuleProblem:
    """One thing wrong with a rule file, and where, for messages and ``disruptfeed rules check``.

    Attributes:
        text: what is wrong, without the file name ("rule 2 ('surge'): window: ...").
        rule: the 1-based index of the ``[[rule]]`` at fault; None for the file as a whole.
        key: the top-level key at fault, in the rule (``window``) or in the file
            (``repeat_interval``); None when no key is (a missing kind is the rule's).
        line: the 1-based line the TOML parser stopped at, for syntax errors; else None.
        column: the 1-based column it stopped at, with ``line``.
    """

    text: str
    rule: int | None = None
    key: str | None = None
    line: int | None = None
    column: int | None = None


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
    rules, problems = check_rules(data)
    if rules is None:
        raise ConfigurationError("\n".join(f"{origin}: {p.text}" for p in problems))
    return rules


def check_rules(data: bytes) -> tuple[RuleSet | None, list[RuleProblem]]:
    """The rule set in a rule file's bytes, or every problem found in them.

    Returns:
        The rules and no problems, or None and at least one problem, in file order.
    """
    doc = _parse(data)
    if isinstance(doc, RuleProblem):
        return None, [doc]
    problems = [
        RuleProblem(
            f"unknown key {key!r}; a rule file holds [[rule]] tables and repeat_interval", key=key
        )
        for key in sorted(set(doc) - {"rule", "repeat_interval"})
    ]
    raw_rules = doc.get("rule", [])
    if not isinstance(raw_rules, list) or not all(isinstance(r, dict) for r in raw_rules):
        problems.append(
            RuleProblem("'rule' must be an array of tables, written [[rule]]", key="rule")
        )
        raw_rules = []
    rules: list[Rule] = []
    first_index: dict[str, int] = {}
    for index, raw in enumerate(raw_rules, start=1):
        name = raw.get("name")
        where = f"rule {index} ({name!r})" if isinstance(name, str) else f"rule {index} (unnamed)"
        try:
            rule = _RULE_ADAPTER.validate_python(raw)
        except ValidationError as exc:
            problems += [
                RuleProblem(f"{where}: {text}", rule=index, key=key)
                for text, key in _describe(exc, raw)
            ]
            continue
        if rule.name in first_index:
            problems.append(
                RuleProblem(
                    f"{where}: name: duplicate of rule {first_index[rule.name]}",
                    rule=index,
                    key="name",
                )
            )
        first_index.setdefault(rule.name, index)
        rules.append(rule)
    repeat = doc.get("repeat_interval", "24h")
    if repeat not in (*WINDOWS, "never"):
        problems.append(
            RuleProblem(
                f"repeat_interval: must be '1h', '24h', '7d' or 'never', got {repeat!r}",
                key="repeat_interval",
            )
        )
    if problems:
        return None, problems
    # TOML has no null: "never" is how a file turns repeats off.
    return RuleSet(rules=tuple(rules), repeat_interval=None if repeat == "never" else repeat), []


_TOML_AT: Final = re.compile(r" \(at line (\d+), column (\d+)\)$")


def _parse(data: bytes) -> dict[str, Any] | RuleProblem:
    """The TOML document in ``data``, or the problem that stopped the parser, and where."""
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        line, column = _line_column(data, exc.start)
        return RuleProblem(f"not UTF-8 text (byte {exc.start})", line=line, column=column)
    except tomllib.TOMLDecodeError as exc:
        # Python 3.11's tomllib gives the position only in the message (lineno is 3.14's).
        text = f"invalid TOML: {exc}"
        at = _TOML_AT.search(str(exc))
        # "(at end of document)" otherwise: the position after the last character.
        line, column = (int(at[1]), int(at[2])) if at else _line_column(data, len(data))
        return RuleProblem(text, line=line, column=column)
    except ValueError:
        # Not a TOMLDecodeError: tomllib hands a decimal integer to int(), which refuses more
        # than 4,300 digits (sys.get_int_max_str_digits).
        found = re.search(rb"[0-9_]{4301,}", data)
        line, column = _line_column(data, found.start()) if found else (None, None)
        where = f" (at line {line}, column {column})" if found else ""
        return RuleProblem(f"invalid TOML: integer too long{where}", line=line, column=column)
    except RecursionError:
        # tomllib reads nested arrays and inline tables recursively.
        return RuleProblem("invalid TOML: arrays or inline tables nested too deeply")


def _line_column(data: bytes, start: int) -> tuple[int | None, int | None]:
    """The 1-based line and column (in characters, as tomllib counts) of a byte offset."""
    line = data.count(b"\n", 0, start) + 1
    column = len(data[data.rfind(b"\n", 0, start) + 1 : start].decode("utf-8", "replace")) + 1
    return line, column


def _describe(exc: ValidationError, raw: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    """One ``field: reason`` line per pydantic error, in the words of the rule file.

    Each comes with the rule's own key it is about (None when the error is about no key).
    """
    kind = raw.get("kind")
    out = []
    for err in exc.errors(include_url=False):
        loc = list(err["loc"])
        if loc and loc[0] in _KINDS:  # the discriminated union puts the tag first
            loc = loc[1:]
        field = ".".join(str(part) for part in loc)
        key = str(loc[0]) if loc else None
        if not field.isprintable():  # an unknown key "a\nb" would break the line in two
            field = repr(field)
        kinds = ", ".join(repr(k) for k in _KINDS)
        match err["type"]:
            case "union_tag_invalid":
                field = key = "kind"
                reason = f"unknown kind {kind!r}; expected one of {kinds}"
            case "union_tag_not_found":
                field, key = "kind", None
                reason = f"missing; every rule needs a kind, one of {kinds}"
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
        out.append((f"{field}: {reason}", key))
    return out
