"""``disruptfeed rules``: check a rule file, and try it on sample events before a worker runs it."""

from __future__ import annotations

__all__ = ["locate", "rules_group"]

import datetime as dt
import re
import sys
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import click

from disruptfeed.cli._common import EXIT_REJECTED, emit, output_option, settings_from
from streams._rules import RuleProblem, RuleSet, check_rules

_HEADER = re.compile(r"\s*\[")
_RULE_HEADER = re.compile(r"""\s*\[\[\s*(?:rule|"rule"|'rule')\s*\]\]""")


def _key_at(lines: list[str], start: int, end: int, key: str) -> tuple[int, int] | None:
    """The 1-based (line, column) of ``key = ...`` or ``key.sub = ...`` in lines [start, end)."""
    quoted = re.escape(key)
    pattern = re.compile(rf"""\s*(?:{quoted}|"{quoted}"|'{quoted}')\s*[=.]""")
    for i in range(start, end):
        found = pattern.match(lines[i])
        if found:
            return i + 1, len(found[0]) - len(found[0].lstrip()) + 1
    return None


def locate(text: str, problem: RuleProblem) -> tuple[int, int] | None:
    """Where a problem is in a rule file: 1-based (line, column), or None if it cannot be told.

    The TOML parser's own position for syntax errors. For a rule's problem, the line of its key
    within that rule's ``[[rule]]`` table, else (a missing key) the table's header; for a key of
    the file itself, its line before the first table (or its own ``[table]`` header).
    """
    if problem.line is not None:
        return problem.line, problem.column or 1
    lines = text.splitlines()
    if problem.rule is not None:
        headers = [i for i, line in enumerate(lines) if _RULE_HEADER.match(line)]
        if problem.rule <= len(headers):
            start = headers[problem.rule - 1]
            end = next(
                (i for i in range(start + 1, len(lines)) if _HEADER.match(lines[i])), len(lines)
            )
            found = _key_at(lines, start + 1, end, problem.key) if problem.key else None
            return found or (start + 1, lines[start].index("[") + 1)
        # Rules written inline (rule = [{...}]): the best is the 'rule' key itself.
        return _top_level(lines, "rule")
    return _top_level(lines, problem.key) if problem.key else None


def _top_level(lines: list[str], key: str) -> tuple[int, int] | None:
    first_table = next((i for i, line in enumerate(lines) if _HEADER.match(line)), len(lines))
    found = _key_at(lines, 0, first_table, key)
    if found:
        return found
    table = re.compile(rf"""\s*\[+\s*(?:{re.escape(key)}|"{re.escape(key)}")\s*[\].]""")
    for i, line in enumerate(lines):
        if table.match(line):
            return i + 1, line.index("[") + 1
    return None


def _problem_rows(path: Path, text: str, problems: Iterable[RuleProblem]) -> list[dict[str, Any]]:
    rows = []
    for problem in problems:
        line, column = locate(text, problem) or (None, None)
        rows.append(
            {
                "file": str(path),
                "line": line,
                "column": column,
                "rule": problem.rule,
                "key": problem.key,
                "message": problem.text,
            }
        )
    return rows


def _problem_line(row: dict[str, Any]) -> str:
    where = f"{row['file']}:{row['line']}:{row['column']}" if row["line"] else row["file"]
    # The position is in front, as compilers put it: no need to repeat tomllib's in the text.
    message = re.sub(r" \(at line \d+, column \d+\)$", "", row["message"])
    return f"{where}: {message}"


def _read(path: Path) -> tuple[str, RuleSet | None, list[dict[str, Any]]]:
    """The file's text, its rules, and its problems as rows (file, line, column, ...)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        problem = RuleProblem(f"cannot read: {exc.strerror or exc}")
        return "", None, _problem_rows(path, "", [problem])
    rules, problems = check_rules(data)
    text = data.decode("utf-8", "replace")
    rows = _problem_rows(path, text, problems)
    rows.sort(key=lambda row: row["line"] or sys.maxsize)  # stable: file order within a line
    return text, rules, rows


@click.group("rules")
def rules_group() -> None:
    """Check alert rule files, and see what they would raise over sample events."""


@rules_group.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@output_option()
def check(file: Path, output: str) -> None:
    """Validate a rule FILE as the worker would load it; each problem with line and column.

    Problems print as FILE:LINE:COLUMN: rule N ('name'): key: reason, one per line: the TOML
    parser's position for syntax errors, the line of the offending key (or of its [[rule]]
    header, for a missing key) for the others. Exits 0 if the file is valid, 1 if not.
    --output json prints {file, ok, problems, rules}; jsonl one problem per line.
    """
    _, rules, rows = _read(file)
    summary = [
        {"name": r.name, "kind": r.kind, "severity": r.severity}
        for r in (rules.rules if rules else ())
    ]
    document = {"file": str(file), "ok": rules is not None, "problems": rows, "rules": summary}
    if rules is None:
        if output == "table":
            click.echo("\n".join(_problem_line(row) for row in rows), err=True)
        else:
            emit(output, document, rows, str)
        sys.exit(EXIT_REJECTED)

    def table() -> str:
        assert rules is not None
        names = ", ".join(f"{r['name']} ({r['kind']}, {r['severity']})" for r in summary)
        repeat = rules.repeat_interval or "never"
        return f"{file}: ok: {len(summary)} rules: {names}; repeat_interval {repeat}"

    emit(output, document, rows, table)


def _when(alert_time: dt.datetime) -> str:
    return alert_time.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _alert_row(alert: Any) -> dict[str, Any]:
    state = alert.status if not alert.repeat else f"{alert.status} (repeat {alert.repeat})"
    if alert.value is None:
        value = "-"
    elif alert.threshold is None:
        value = str(alert.value)
    else:
        op = ">=" if alert.value >= alert.threshold else "<"
        value = f"{alert.value} {op} {alert.threshold:g}"
    return {
        "time": _when(alert.evaluated_at),
        "rule": alert.rule,
        "region": alert.region,
        "event_type": alert.event_type,
        "state": state,
        "value": value,
        "severity": alert.severity,
    }


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    widths = {c: max([len(c), *(len(str(r[c])) for r in rows)]) for c in columns}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip()]
    lines += ["  ".join(str(r[c]).ljust(widths[c]) for c in columns).rstrip() for r in rows]
    return "\n".join(lines)


def _summary(rules: RuleSet, alerts: list[Any]) -> list[dict[str, Any]]:
    """Per rule, in file order: episodes fired, repeats, resolved, and still firing at the end."""
    fired: Counter[str] = Counter()
    repeats: Counter[str] = Counter()
    resolved: Counter[str] = Counter()
    live: dict[str, set[str]] = {r.name: set() for r in rules.rules}
    for alert in alerts:
        if alert.status == "resolved":
            resolved[alert.rule] += 1
            live[alert.rule].discard(alert.fingerprint)
        elif alert.repeat:
            repeats[alert.rule] += 1
        else:
            fired[alert.rule] += 1
            live[alert.rule].add(alert.fingerprint)
    return [
        {
            "rule": r.name,
            "kind": r.kind,
            "severity": r.severity,
            "fired": fired[r.name],
            "repeats": repeats[r.name],
            "resolved": resolved[r.name],
            "firing_at_end": len(live[r.name]),
        }
        for r in rules.rules
    ]


@rules_group.command("test")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--events",
    "events_file",
    required=True,
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="JSON Lines of events, as 'disruptfeed publish' reads them ('-' for stdin).",
)
@output_option()
@click.pass_context
def test(ctx: click.Context, file: Path, events_file: Path, output: str) -> None:
    """Show the alerts the rules in FILE would raise over the events in a JSON Lines file.

    The events go, in file order, through the worker's own counting and alert code with this
    rule file and the worker's settings (grace, dedupe horizon, partitions: each event on the
    partition its region's key would go to, stream time per partition), as if published now
    to empty topics. Prints each alert (time, rule, region, state, value) and a summary per
    rule. Lines 'publish' would reject are reported as FILE:LINE: field: reason and skipped;
    events the worker would dead-letter are reported too. Exits 1 if the rule file is invalid
    or some line was rejected. --output json prints {alerts, summary, events, rejected}; jsonl
    one alert per line (the summary then goes to stderr).
    """
    from aiokafka.partitioner import murmur2

    from disruptfeed.topics import topic_for
    from producers import read_events
    from schemas import codec
    from streams._processor import Processor

    _, rules, problems = _read(file)
    if rules is None:
        click.echo("\n".join(_problem_line(row) for row in problems), err=True)
        sys.exit(EXIT_REJECTED)
    settings = settings_from(ctx).model_copy(update={"rules_file": file})
    processor = Processor.for_settings(settings)
    name = "<stdin>" if str(events_file) == "-" else str(events_file)
    if name != "<stdin>" and not events_file.exists():
        raise click.BadParameter(f"{events_file} does not exist", param_hint="--events")
    stream: IO[bytes] = sys.stdin.buffer if name == "<stdin>" else events_file.open("rb")
    alerts: list[Any] = []
    next_offset: Counter[tuple[str, int]] = Counter()
    rejected = counted = 0
    now_ms = time.time_ns() // 1_000_000
    with stream:
        for result in read_events(stream):
            if result.event is None:
                rejected += 1
                click.secho(result.describe(name), fg="yellow", err=True)
                continue
            event = result.event
            key = codec.key(event)
            topic = topic_for(settings, event)
            # Where a producer's default partitioner would put it: stream time is per partition.
            partition = (murmur2(key) & 0x7FFFFFFF) % settings.partitions
            offset = next_offset[(topic, partition)]
            next_offset[(topic, partition)] += 1
            outcome = processor.process(
                topic,
                partition,
                offset,
                key,
                codec.encode(event),
                codec.headers(event),
                timestamp_ms=now_ms,
            )
            if outcome.dead_letter is not None:
                rejected += 1
                reason = dict(outcome.dead_letter.headers).get("dlq_reason", b"").decode()
                click.secho(f"{name}:{result.line}: dead-lettered: {reason}", fg="yellow", err=True)
            counted += outcome.counted is not None
            alerts.extend(outcome.alerts)
    rows = [_alert_row(a) for a in alerts]
    summary = _summary(rules, alerts)
    document = {
        "alerts": [a.model_dump(mode="json") for a in alerts],
        "summary": summary,
        "events": counted,
        "rejected": rejected,
    }
    totals = (
        f"{len(alerts)} alerts from {counted} events counted"
        f"{f', {rejected} lines rejected' if rejected else ''}"
    )

    def table() -> str:
        head = _table(rows, ["time", "rule", "region", "state", "value"]) if rows else "no alerts"
        columns = ["rule", "kind", "severity", "fired", "repeats", "resolved", "firing_at_end"]
        return f"{head}\n\n{_table(summary, columns)}\n{totals}"

    emit(output, document, [a.model_dump(mode="json") for a in alerts], table)
    if output == "jsonl":
        click.echo(_table(summary, list(summary[0]) if summary else ["rule"]), err=True)
    if rejected:
        sys.exit(EXIT_REJECTED)
