"""`disruptfeed rules check` and `rules test`: positions of problems, alerts over events."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from disruptfeed.cli import main
from disruptfeed.cli._rules import locate
from disruptfeed.settings import Settings
from schemas import EventBase, NetworkIdentified, ReportReleased, codec
from streams._rules import check_rules
from tests.factories import account

pytestmark = pytest.mark.unit

RULES = Path(__file__).parents[2] / "streams" / "rules.toml"

BAD = """\
# a comment, then the file's own keys
repeat_interval = "1d"
colour = 3

[[rule]]
name = "burst"
kind = "threshold"
event_type = "account.disrupted"
window = "2h"
threshold = 5
severity = "critical"

[[rule]]
name = "surge"
kind = "surge"
event_type = "account.disrupted"
window = "24h"
min_count = 8
severity = "warning"
    factor = 1
"""


def invoke(*args: str, settings: Settings | None = None) -> Result:
    return CliRunner().invoke(main, ["rules", *args], obj=settings or Settings())


def write(tmp_path: Path, text: str | bytes, name: str = "rules.toml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_check_accepts_the_shipped_rules() -> None:
    result = invoke("check", str(RULES))
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"{RULES}: ok: 4 rules: burst-accounts (threshold, critical),")
    assert result.output.rstrip().endswith("repeat_interval 24h")


def test_check_gives_each_problem_its_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, BAD)
    result = invoke("check", str(path))
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"{path}:2:1: repeat_interval: must be '1h', '24h', '7d' or 'never', got '1d'",
        f"{path}:3:1: unknown key 'colour'; a rule file holds [[rule]] tables and repeat_interval",
        f"{path}:9:1: rule 1 ('burst'): window: Input should be '1h', '24h' or '7d', got '2h'",
        # A missing key is the rule's: its [[rule]] header.
        f"{path}:13:1: rule 2 ('surge'): baseline: required field is missing",
        f"{path}:20:5: rule 2 ('surge'): factor: Input should be greater than 1, got 1",
    ]


def test_check_json_has_the_same_positions(tmp_path: Path) -> None:
    path = write(tmp_path, BAD)
    result = invoke("check", str(path), "--output", "json")
    assert result.exit_code == 1
    doc = json.loads(result.output)
    assert doc["ok"] is False
    assert doc["rules"] == []
    assert [(p["line"], p["column"], p["rule"], p["key"]) for p in doc["problems"]] == [
        (2, 1, None, "repeat_interval"),
        (3, 1, None, "colour"),
        (9, 1, 1, "window"),
        (13, 1, 2, "baseline"),
        (20, 5, 2, "factor"),
    ]
    lines = invoke("check", str(path), "--output", "jsonl").output.splitlines()
    assert [json.loads(line)["key"] for line in lines] == [p["key"] for p in doc["problems"]]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # tomllib's own position for a syntax error (not repeated in the message).
        (
            'a = 1\n[[rule]]\nname = "x"\nwindow = \n',
            ":4:10: invalid TOML: Invalid value",
        ),
        ('[[rule]]\nname = "x\n', ":2:10: invalid TOML: Illegal character '\\n'"),
        # A duplicate name: the second rule's name line.
        (
            '[[rule]]\nname = "r"\nkind = "report"\n\n[[rule]]\n  name = "r"\nkind = "report"\n',
            ":6:3: rule 2 ('r'): name: duplicate of rule 1",
        ),
        # A quoted key is found too; an unknown kind points at the kind.
        ('[[rule]]\n"name" = "r"\n"kind" = "spike"\n', ":3:1: rule 1 ('r'): kind: unknown kind"),
        # A missing kind is the rule's: its header line.
        ('\n\n  [[ rule ]]\nname = "r"\n', ":3:3: rule 1 ('r'): kind: missing; every rule"),
        # Rules written inline: the line of the 'rule' key.
        ('x = 1\nrule = [\n  {name = "r", kind = "spike"},\n]\n', ":2:1: rule 1 ('r'): kind"),
        # An unknown table of the file: its header.
        ('[[rule]]\nname = "r"\nkind = "report"\n\n[extra]\na = 1\n', ":5:1: unknown key 'extra'"),
        ("rule = 5\n", ":1:1: 'rule' must be an array of tables"),
    ],
)
def test_check_positions(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    result = invoke("check", str(path))
    assert result.exit_code == 1
    assert any(line.startswith(f"{path}{expected}") for line in result.output.splitlines()), (
        result.output
    )


def test_check_positions_of_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    path = write(tmp_path, b'[[rule]]\nname = "r\xc3\xa9\xff"\n')
    result = invoke("check", str(path))
    assert result.exit_code == 1
    # Line 2, column 11: after 'name = "r' and the two-byte e-acute, counted as one character.
    assert result.output == f"{path}:2:11: not UTF-8 text (byte 20)\n"


def test_check_an_unreadable_file(tmp_path: Path) -> None:
    result = invoke("check", str(tmp_path / "absent.toml"))
    assert result.exit_code == 1
    assert result.output == f"{tmp_path / 'absent.toml'}: cannot read: No such file or directory\n"


def test_locate_finds_nothing_it_cannot_tell() -> None:
    _, problems = check_rules(b"[[rule]]\nname = 'r'\n")
    assert locate("", problems[0]) is None  # not the text the problem came from: no guess


def _events_file(tmp_path: Path, events: Sequence[EventBase], extra: bytes = b"") -> Path:
    data = b"".join(codec.encode(e) + b"\n" for e in events) + extra
    return write(tmp_path, data, "events.jsonl")


THREE_IN_AN_HOUR = """\
[[rule]]
name = "ru-three"
kind = "threshold"
event_type = "account.disrupted"
window = "1h"
threshold = 3
regions = ["RU"]
severity = "critical"
"""


def test_rules_test_raises_and_resolves_as_the_worker_would(tmp_path: Path) -> None:
    rules = write(tmp_path, THREE_IN_AN_HOUR)
    first = account("RU", minutes=0)
    events = [
        first,
        account("RU", minutes=10),
        account("CN", minutes=15),  # another region: not counted for RU
        account("RU", minutes=20),  # the third RU event within the hour: fires
        first,  # the same id again: counted once
        account("RU", minutes=200),  # the hour slid past the burst: resolves
    ]
    path = _events_file(tmp_path, events)
    result = invoke("test", str(rules), "--events", str(path))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[:3] == [
        "TIME                  RULE      REGION  STATE     VALUE",
        "2026-03-01 12:20:00Z  ru-three  RU      firing    3 >= 3",
        "2026-03-01 15:20:00Z  ru-three  RU      resolved  1 < 3",
    ]
    assert "ru-three  threshold  critical  1      0        1         0" in result.output
    assert lines[-1] == "2 alerts from 5 events counted"

    doc = json.loads(invoke("test", str(rules), "--events", str(path), "--output", "json").output)
    assert [(a["status"], a["value"]) for a in doc["alerts"]] == [("firing", 3), ("resolved", 1)]
    assert set(doc["alerts"][0]["sample_event_ids"]) <= {str(e.event_id) for e in events}
    assert doc["summary"] == [
        {
            "rule": "ru-three",
            "kind": "threshold",
            "severity": "critical",
            "fired": 1,
            "repeats": 0,
            "resolved": 1,
            "firing_at_end": 0,
        }
    ]
    assert (doc["events"], doc["rejected"]) == (5, 0)


def test_rules_test_reports_bad_lines_and_exits_1(tmp_path: Path) -> None:
    rules = write(tmp_path, THREE_IN_AN_HOUR)
    path = _events_file(tmp_path, [account("RU")], b'{"type": "account.disrupted"}\n')
    result = invoke("test", str(rules), "--events", str(path), "--output", "jsonl")
    assert result.exit_code == 1
    assert f"{path}:2: event_id: Field required" in result.output
    assert "0 alerts" not in result.output  # jsonl: alerts only (there are none) and the summary


def test_rules_test_refuses_a_bad_rule_file_with_positions(tmp_path: Path) -> None:
    rules = write(tmp_path, BAD)
    path = _events_file(tmp_path, [account("RU")])
    result = invoke("test", str(rules), "--events", str(path))
    assert result.exit_code == 1
    assert f"{rules}:9:1: rule 1 ('burst'): window:" in result.output
    assert "TIME" not in result.output


def test_rules_test_over_the_sample_with_the_shipped_rules(tmp_path: Path) -> None:
    sample = tmp_path / "sample.jsonl"
    made = CliRunner().invoke(main, ["sample", "-o", str(sample)])
    assert made.exit_code == 0, made.output
    events = [codec.decode(line) for line in sample.read_bytes().splitlines()]
    result = invoke("test", str(RULES), "--events", str(sample), "--output", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["events"] == len(events)
    firing = Counter(
        a["rule"] for a in doc["alerts"] if a["status"] == "firing" and not a["repeat"]
    )
    # One informational alert per released report, one critical per state-linked network.
    assert firing["report-released"] == sum(isinstance(e, ReportReleased) for e in events)
    assert firing["new-state-network"] == sum(
        isinstance(e, NetworkIdentified)
        and e.actor.attribution in ("state-linked", "likely state-linked")
        for e in events
    )
    # The sample is tuned so that takedown bursts fire the burst rule (streams/rules.toml).
    assert firing["burst-accounts"] > 0
    summary = {row["rule"]: row for row in doc["summary"]}
    assert list(summary) == [
        "burst-accounts",
        "surge-accounts",
        "new-state-network",
        "report-released",
    ]
    for rule, row in summary.items():
        assert row["fired"] == firing[rule]
        assert row["fired"] - row["resolved"] == row["firing_at_end"]
