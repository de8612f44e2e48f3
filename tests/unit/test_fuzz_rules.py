"""Property-based tests of the rule file parser (``streams.load_rules``).

Random TOML-ish text and structurally random ``[[rule]]`` tables give a rule set or a
ConfigurationError whose every line names the file and, for a rule, its index, name and field;
never another exception.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from disruptfeed.errors import ConfigurationError
from schemas import Attribution, EventType
from streams import RuleSet, load_rules
from streams._rules import NewNetworkRule, ReportRule, SurgeRule, ThresholdRule
from tests.fuzz import REGIONS, examples, slugs

pytestmark = pytest.mark.unit

KINDS = ["threshold", "surge", "new-network", "report"]
FIELDS = {
    name
    for model in (ThresholdRule, SurgeRule, NewNetworkRule, ReportRule)
    for name in model.model_fields
}

# --- TOML values and a writer for them (the standard library reads TOML but does not write it)

toml_scalars = st.one_of(
    st.text(max_size=20),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),
    st.booleans(),
    st.datetimes(timezones=st.just(dt.UTC) | st.none()),
    st.dates(),
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def _string(text: str) -> str:
    # JSON's escapes of control characters are TOML's; TOML wants DEL escaped too. (Not
    # ensure_ascii: JSON writes characters beyond the BMP as surrogate pairs, which TOML refuses.)
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(value: Any) -> str:
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int | dt.date):
        return str(value) if isinstance(value, int) else value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{_string(k)} = {_value(v)}" for k, v in value.items()) + "}"


def _document(doc: dict[str, Any]) -> str:
    """TOML for ``doc``: top-level keys, then its ``rule`` list as [[rule]] tables if it is one."""
    rules = doc.get("rule")
    tables = isinstance(rules, list) and rules and all(isinstance(r, dict) for r in rules)
    lines = [f"{_string(k)} = {_value(v)}" for k, v in doc.items() if not (k == "rule" and tables)]
    if tables:
        assert isinstance(rules, list)
        for rule in rules:
            lines.append("[[rule]]")
            lines += [f"{_string(k)} = {_value(v)}" for k, v in rule.items()]
    return "\n".join(lines) + "\n"


# --- rule tables: plausible keys with plausible (often valid) or random values


def _rarely(usual: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly ``usual``, one time in twenty ``odd``."""
    return st.integers(0, 19).flatmap(lambda n: odd if n == 0 else usual)


windows = st.sampled_from(["1h", "24h", "7d"])
plausible: dict[str, st.SearchStrategy[Any]] = {  # valid values, and now and then a near miss
    "name": _rarely(slugs, st.sampled_from(["a", "b", "A", "-x"])),  # "a", "b": duplicates
    "kind": _rarely(st.sampled_from(KINDS), st.sampled_from(["Threshold", "", "surges"])),
    "event_type": _rarely(st.sampled_from(get_args(EventType)), st.just("account")),
    "window": _rarely(windows, st.sampled_from(["2h", "1H", "30d"])),
    "baseline": st.sampled_from(["24h", "7d"]),  # no longer than a 24h or 7d window: refused
    "threshold": st.integers(min_value=0, max_value=50),  # 0 is refused
    "factor": st.floats(min_value=0.5, max_value=10) | st.integers(min_value=1, max_value=10),
    "min_count": st.integers(min_value=0, max_value=50),
    "regions": st.lists(_rarely(st.sampled_from(REGIONS), st.text(max_size=3)), max_size=3),
    "attributions": st.lists(st.sampled_from(get_args(Attribution)), max_size=3),
    "hold": windows,
    "severity": _rarely(st.sampled_from(["info", "warning", "critical"]), st.just("fatal")),
}
SHAPES: dict[str, tuple[list[str], list[str]]] = {  # kind -> (required keys, optional keys)
    "threshold": (["event_type", "window", "threshold", "severity"], ["regions"]),
    "surge": (["event_type", "window", "baseline", "factor", "min_count", "severity"], []),
    "new-network": (["severity"], ["attributions", "hold"]),
    "report": ([], ["hold", "severity"]),
}


def _sometimes(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly ``strategy``, one time in fifty any TOML value."""
    return st.integers(0, 49).flatmap(lambda n: toml_values if n == 0 else strategy)


@st.composite
def rule_tables(draw: st.DrawFn) -> dict[str, Any]:
    """A rule of some kind with plausible values, then perhaps a key dropped or one added."""
    kind = draw(st.sampled_from(KINDS))
    required, optional = SHAPES[kind]
    chosen = [key for key in optional if draw(st.booleans())]
    keys = ["name", "kind", *required, *chosen]
    rule = {key: draw(_sometimes(plausible[key])) for key in keys}
    rule["kind"] = draw(_rarely(st.just(kind), plausible["kind"]))
    if draw(st.integers(0, 19)) == 0:
        del rule[draw(st.sampled_from(keys))]
    if draw(st.integers(0, 19)) == 0:
        rule[draw(st.sampled_from(list(plausible)) | st.text(max_size=8))] = draw(toml_values)
    return rule


documents = st.fixed_dictionaries(
    {"rule": _sometimes(st.lists(rule_tables(), max_size=4))},
    optional={
        "repeat_interval": _sometimes(st.sampled_from(["1h", "24h", "7d", "never"])),
    },
)

# --- checking an answer

_RULE_LINE = re.compile(r"rule (?P<index>\d+) ")
_FILE_LINE = re.compile(
    r"unknown key .+|'rule' must be an array of tables, written \[\[rule\]\]"
    r"|repeat_interval: must be .+|invalid TOML: .+|not UTF-8 text \(byte \d+\)"
)


@pytest.fixture(scope="module")
def rule_file() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp) / "rules.toml"


def _load(path: Path, data: bytes) -> RuleSet | ConfigurationError:
    path.write_bytes(data)
    try:
        return load_rules(path)
    except ConfigurationError as exc:
        return exc


def _check_error(path: Path, error: ConfigurationError, rules: Any = None) -> None:
    """Every line names the file, then a rule (index, name, field, reason) or the file's fault."""
    lines = str(error).split("\n")
    assert lines
    for line in lines:
        assert line.isprintable(), line  # one problem a line: nothing in it breaks the line
        assert line.startswith(f"{path}: "), line
        rest = line.removeprefix(f"{path}: ")
        found = _RULE_LINE.match(rest)
        if found is None:
            assert _FILE_LINE.fullmatch(rest), line
            continue
        assert isinstance(rules, list), line  # rule lines only come from [[rule]] tables
        index = int(found["index"])
        assert 1 <= index <= len(rules), line
        rule = rules[index - 1]
        name = rule.get("name")
        where = (
            f"rule {index} ({name!r}): " if isinstance(name, str) else f"rule {index} (unnamed): "
        )
        assert rest.startswith(where), line
        problem = rest.removeprefix(where)
        shown = {str(key) if str(key).isprintable() else repr(str(key)) for key in rule} | FIELDS
        assert any(problem.startswith((f"{field}: ", f"{field}.")) for field in shown), line
        assert problem.partition(": ")[2].strip(), line  # a reason


@settings(max_examples=examples(1.0))
@given(documents)
def test_random_rule_tables_give_rules_or_name_each_problem(
    rule_file: Path, doc: dict[str, Any]
) -> None:
    got = _load(rule_file, _document(doc).encode())
    rules = doc["rule"]
    event("valid" if isinstance(got, RuleSet) else "refused")
    if isinstance(got, RuleSet):
        assert isinstance(rules, list)
        assert len(got.rules) == len(rules)
        assert len({r.name for r in got.rules}) == len(rules)
        return
    _check_error(rule_file, got, rules)


TOKENS = [
    "[[rule]]", "[rule]", "[", "]", "{", "}", "=", ",", ".", "\n", " ", "#", '"', "'", '"""',
    "'''", "\\", "\\u00e9", "name", "kind", "threshold", "window", "repeat_interval", "rule",
    '"surge"', '"1h"', '"never"', "3", "-1", "1e9", "0x1f", "nan", "inf", "true",
    "1979-05-27T07:32:00Z", "1979-05-27", "07:32:00", "\r", "\t", "\x00", "é",
]  # fmt: skip


@settings(max_examples=examples(1.0))
@given(
    st.lists(st.sampled_from(TOKENS) | st.text(max_size=3), max_size=30).map(
        lambda parts: "".join(parts).encode()
    )
    | st.binary(max_size=60)
)
@example(b"a = " + b"[" * 5_000)  # nested past the stack: tomllib raised RecursionError
@example(b"[[rule]]\nthreshold = " + b"9" * 4_301)  # tomllib's int() raised ValueError
@example(b"\xef\xbb\xbfrepeat_interval = '1h'")  # a byte-order mark
@example(b"\xff")
def test_random_text_gives_rules_or_a_positioned_reason(rule_file: Path, data: bytes) -> None:
    got = _load(rule_file, data)
    if isinstance(got, RuleSet):
        return
    _check_error(rule_file, got, _rule_tables_of(data))
    message = str(got)
    if "invalid TOML" in message and "nested too deeply" not in message:
        assert re.search(r"\(at line \d+, column \d+\)|\(at end of document\)", message), message


def _rule_tables_of(data: bytes) -> Any:
    """The ``rule`` list of a document that parsed (for checking rule indexes in messages)."""
    import tomllib

    try:
        return tomllib.loads(data.decode()).get("rule")
    except (ValueError, RecursionError):
        return None


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"a = " + b"[" * 5_000, "invalid TOML: arrays or inline tables nested too deeply"),
        (
            b"[[rule]]\nthreshold = " + b"9" * 4_301,
            "invalid TOML: integer too long (at line 2, column 13)",
        ),
    ],
)
def test_tomllib_limits_are_rules_errors(rule_file: Path, data: bytes, reason: str) -> None:
    got = _load(rule_file, data)
    assert isinstance(got, ConfigurationError)
    assert str(got) == f"{rule_file}: {reason}"
