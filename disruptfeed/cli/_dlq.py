"""``disruptfeed dlq``: the dead-letter topic for on-call people: tail it, redrive from it."""

from __future__ import annotations

__all__ = ["dlq_group"]

import datetime as dt
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import click

from disruptfeed.cli._common import (
    EXIT_BROKER,
    EXIT_REJECTED,
    EXIT_USAGE,
    bootstrap_option,
    emit,
    fail,
    output_option,
    progress,
    run,
    settings_from,
)
from disruptfeed.errors import ConfigurationError

if TYPE_CHECKING:
    from disruptfeed._dlq import DeadLetterReader, DeadLetterRecord

Start = Literal["earliest", "latest"] | dt.datetime

_REASON_WIDTH = 200
_HELP_REASON = (
    "Only dead letters whose reason code (the reason label of "
    "disruptfeed_events_dead_lettered_total) or error type this is, or whose reason contains "
    "it; case-insensitive, repeat for any of several: decode, schema, internal, "
    "future-event-time, DecodeError, ..."
)
_HELP_SINCE = (
    "Only dead letters written at or after this time: ISO 8601 (UTC if no offset) or a span "
    "back from now such as 30m, 2h, 7d."
)


def _since(value: str | None) -> dt.datetime | None:
    from disruptfeed._dlq import parse_since

    if value is None:
        return None
    try:
        return parse_since(value)
    except ConfigurationError as exc:
        fail(f"--since: {exc}", EXIT_USAGE)


async def _backlog(
    reader: DeadLetterReader, keep: Callable[[DeadLetterRecord], bool], limit: int | None
) -> list[dict[str, Any]]:
    """The last ``limit`` (None: all) kept dead letters there now, oldest first, as rows.

    Each row says where a redrive sent the dead letter, if one did (its successor comes later
    in the topic, so it is among the records read).
    """
    successors: dict[str, str] = {}
    found: list[tuple[int, int, int, dict[str, Any]]] = []
    async for record in reader.backlog():
        if record.redrive_of is not None:
            successors[record.redrive_of] = record.redriven_to or record.position
        if keep(record):
            found.append((record.timestamp_ms, record.partition, record.offset, record.row()))
            if limit is not None and len(found) > 2 * limit + 100:  # bounded memory
                found = sorted(found, key=lambda f: f[:3])[len(found) - limit :]
    found.sort(key=lambda f: f[:3])
    rows = [row for *_, row in found[len(found) - limit if limit is not None else 0 :]]
    for row in rows:
        row["redriven"] = successors.get(row["position"])
    return rows


@click.group("dlq")
def dlq_group() -> None:
    """The dead-letter topic: see what was refused and why, and redrive what is valid now."""


class _Table:
    """Dead letters as aligned lines, the value (and any redrive) on an indented line below."""

    COLUMNS = ("dead_lettered_at", "source", "error_type", "field", "reason")
    TITLES = ("DEAD-LETTERED", "SOURCE", "ERROR", "FIELD", "REASON")

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.widths = [
            max([len(title), *(len(self._cell(r, c)) for r in rows)])
            for c, title in zip(self.COLUMNS, self.TITLES, strict=True)
        ]

    @staticmethod
    def _cell(row: dict[str, Any], column: str) -> str:
        value = str(row[column] or "-")
        if column == "dead_lettered_at":
            return value[:19].replace("T", " ") + "Z"
        if column == "reason" and len(value) > _REASON_WIDTH:
            return value[: _REASON_WIDTH - 1] + "…"
        return value

    def header(self) -> str:
        return "  ".join(t.ljust(w) for t, w in zip(self.TITLES, self.widths, strict=True)).rstrip()

    def line(self, row: dict[str, Any]) -> str:
        cells = [self._cell(row, c) for c in self.COLUMNS]
        text = "  ".join(c.ljust(w) for c, w in zip(cells, self.widths, strict=True)).rstrip()
        text += f"\n    value: {row['value']}"
        if row.get("redriven"):
            text += f"\n    redriven: {row['redriven']}"
        return text


@dlq_group.command("tail")
@click.option(
    "--from",
    "start",
    type=click.Choice(["earliest", "latest"]),
    default=None,
    help="Where to start: every dead letter kept, or only those to come (with --follow). "
    "Default: the last -n.",
)
@click.option(
    "-n",
    "--lines",
    "count",
    type=click.IntRange(min=0),
    default=None,
    help="Show only the last N of the dead letters there now (default 10, all with --from or "
    "--since).",
)
@click.option("-f", "--follow", is_flag=True, help="Then keep printing new ones (Ctrl-C stops).")
@click.option("--reason", "reasons", multiple=True, help=_HELP_REASON)
@click.option("--since", default=None, help=_HELP_SINCE)
@bootstrap_option
@output_option()
@click.pass_context
def tail(
    ctx: click.Context,
    start: Literal["earliest", "latest"] | None,
    count: int | None,
    follow: bool,
    reasons: tuple[str, ...],
    since: str | None,
    output: str,
) -> None:
    """Show dead-lettered records: reason, source position, error type, field and value.

    Like tail(1): the last 10 dead letters by default (-n for more), oldest first; --from
    earliest for all, --since for those written since a time; --follow keeps printing new
    ones. Each shows when it was dead-lettered, the refused record's topic[partition]@offset,
    the error type, the offending field, the reason, and a printable excerpt of the value
    (binary escaped or in hex; an original too big to copy says where it still is). A dead
    letter a redrive has dealt with also says where it went. --output json prints one
    document (jsonl, one object per line, with --follow).
    """
    from disruptfeed._dlq import DeadLetterReader

    settings = settings_from(ctx)
    if start == "latest" and since is not None:
        raise click.UsageError("--from latest and --since both say where to start; pick one")
    begin: Start = _since(since) or ("latest" if start == "latest" else "earliest")
    limit = count if count is not None else (10 if start is None and since is None else None)
    streaming = output != "table" and follow

    def keep(record: DeadLetterRecord) -> bool:
        return not record.is_marker and record.matches(reasons)

    def show_live(record: DeadLetterRecord, table: _Table) -> None:
        if streaming:
            click.echo(json.dumps(record.row(), sort_keys=True))
        else:
            click.echo(table.line(record.row()))

    async def go() -> None:
        async with DeadLetterReader(settings) as reader:
            await reader.seek(begin)
            rows = await _backlog(reader, keep, limit)
            table = _Table(rows)
            if streaming:
                for row in rows:
                    click.echo(json.dumps(row, sort_keys=True))
            elif output != "table":
                emit(output, rows, rows, str)
            elif rows or follow:
                click.echo(table.header())
                for row in rows:
                    click.echo(table.line(row))
            else:
                click.echo("no dead letters", err=True)
            if follow:
                async for record in reader.live():
                    if keep(record):
                        show_live(record, table)

    try:
        run(go())
    except KeyboardInterrupt:
        return


_VERBS = {
    "redriven": ("redriven", "would redrive"),
    "failed-again": ("failed again", "would fail again"),
    "skipped": ("skipped", "would skip"),
    "already-redriven": ("already redriven", "already redriven"),
    "not-acknowledged": ("not acknowledged", "not acknowledged"),
}


@dlq_group.command("redrive")
@click.option("--reason", "reasons", multiple=True, help=_HELP_REASON)
@click.option("--since", default=None, help=_HELP_SINCE)
@click.option("--dry-run", is_flag=True, help="Say what would happen to each; publish nothing.")
@bootstrap_option
@output_option()
@click.pass_context
def redrive(
    ctx: click.Context,
    reasons: tuple[str, ...],
    since: str | None,
    dry_run: bool,
    output: str,
) -> None:
    """Publish the dead letters that are valid now to their source topic again.

    Each dead letter (of --reason, written --since) is checked again as the worker checks a
    record: its value and CloudEvents headers decoded and validated, its type that of its
    source topic, its time not too far ahead of now. One valid now (the skew limit or the
    clock changed, or it is a fixed copy) is published through the validating producer; its
    event id keeps it idempotent downstream (the worker counts an id once), and a marker
    written to the dead-letter topic records where it went. One that fails again is written
    again to the dead-letter topic with its new reason and a dlq_redrive_of header naming
    the dead letter it replaces, so nothing is lost. A dead letter that names its original
    instead of copying it (too big to copy, or the worker's own handling failed) is judged on
    the original, read from its source position while retention keeps it. A record from a
    topic other than the event topics is skipped and reported.

    A dead letter with a marker or a replacement is never redriven again: redriving the same
    range twice publishes nothing twice (a replacement is itself redriven by later runs).
    Exits 0 when nothing failed again, 1 when something did (or would), 3 when the broker is
    unreachable or did not acknowledge some records (running it again is safe).
    """
    from disruptfeed._dlq import DeadLetterReader
    from disruptfeed._dlq_originals import fetch_originals
    from disruptfeed._redrive import plan_redrive
    from disruptfeed._redrive import redrive as carry_out

    settings = settings_from(ctx)
    begin: Start = _since(since) or "earliest"

    async def read() -> list[Any]:
        async with DeadLetterReader(settings) as reader:
            await reader.seek(begin)
            records = [record async for record in reader.backlog()]
        return await fetch_originals(settings, records, reasons)

    items = plan_redrive(run(read()), settings, reasons)
    if not dry_run:
        todo = sum(1 for i in items if i.action in ("redriven", "failed-again"))
        with progress(todo, "redriving", "records") as bar:
            run(carry_out(settings, items, bar.update))
    rows = [item.row() for item in items]
    counts = {
        action: sum(1 for i in items if i.action == action)
        for action in _VERBS
        if any(i.action == action for i in items)
    }
    verb = 1 if dry_run else 0
    summary = ", ".join(f"{_VERBS[a][verb]} {n}" for a, n in counts.items()) or "no dead letters"

    def table() -> str:
        # A real run lists what needs a look; a dry run, every dead letter it considered.
        shown = [i for i in items if dry_run or i.action not in ("redriven", "already-redriven")]
        lines = []
        for i in shown:
            detail = i.detail
            if i.action == "failed-again" and i.result:
                detail += f" (dead-lettered again at {i.result})"
            lines.append(
                f"{i.letter.position}  {i.letter.source}  {_VERBS[i.action][verb]}: {detail}"
            )
        return "\n".join([*lines, summary])

    document = {
        "dry_run": dry_run,
        "counts": {a.replace("-", "_"): counts.get(a, 0) for a in _VERBS},
        "items": rows,
    }
    emit(output, document, rows, table)
    if output == "jsonl":
        click.echo(summary, err=True)
    if counts.get("not-acknowledged"):
        sys.exit(EXIT_BROKER)
    if counts.get("failed-again"):
        sys.exit(EXIT_REJECTED)
