"""Subcommands that move events: publish, tail, sample."""

from __future__ import annotations

__all__ = ["publish", "sample", "tail"]

import datetime as dt
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import click

from disruptfeed.cli._common import (
    EXIT_BROKER,
    EXIT_REJECTED,
    bootstrap_option,
    output_option,
    progress,
    run,
    settings_from,
)
from disruptfeed.sample import DEFAULT_SEED, SampleSpec, build_sample
from disruptfeed.topics import DEAD_LETTER, EVENT_TOPICS
from schemas import AccountDisrupted, Event, NetworkIdentified, ReportReleased, codec


def _counting(lines: IO[bytes], bar: Any) -> Iterator[bytes]:
    # Progress by bytes read: the file is read once, never counted beforehand.
    for line in lines:
        bar.update(len(line))
        yield line


@click.command()
@click.argument("file", type=click.Path(allow_dash=True, dir_okay=False, path_type=Path))
@click.option(
    "--chunk", default=1_000, show_default=True, help="Events sent per acknowledgement wait."
)
@bootstrap_option
@click.pass_context
def publish(ctx: click.Context, file: Path, chunk: int) -> None:
    """Validate and publish events from a JSON Lines FILE ('-' for stdin).

    Each line is one event (see 'disruptfeed schemas export'). Bad lines are reported on stderr
    as FILE:LINE: field: reason and skipped; the lines around them are still published. A repeated
    event id is published once. Exits 1 if any line was rejected; 3 if the broker is unreachable
    or did not acknowledge some lines within DISRUPTFEED_DELIVERY_TIMEOUT_SECONDS (listed as
    FILE:LINE: not acknowledged: reason, with the lines not sent after that; publishing them
    again is safe, since the worker counts an event id once).
    """
    from producers import LineResult, publish_lines

    settings = settings_from(ctx)
    name = "<stdin>" if str(file) == "-" else str(file)
    if name != "<stdin>" and not file.exists():
        raise click.BadParameter(f"{file} does not exist", param_hint="FILE")
    total = None if name == "<stdin>" else file.stat().st_size

    def rejected(result: LineResult) -> None:
        bar.clear()
        click.secho(result.describe(name), fg="yellow", err=True)

    stream: IO[bytes] = sys.stdin.buffer if name == "<stdin>" else file.open("rb")
    with stream, progress(total, "publishing", "B", scale=True) as bar:
        report = run(
            publish_lines(_counting(stream, bar), settings, chunk=chunk, on_rejected=rejected)
        )
    for line, reason in report.failed:
        click.secho(f"{name}:{line}: not acknowledged: {reason}", fg="red", err=True)
    click.echo(report.summary(), err=True)
    if report.failed:
        sys.exit(EXIT_BROKER)  # not the input's fault: retrying those lines later may work
    if not report.ok:
        sys.exit(EXIT_REJECTED)


def describe(event: Event) -> str:
    """A readable one-line form of an event, for people watching a terminal."""
    when = event.occurred_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    head = f"{when}  {event.region:<7}  {event.type:<18}"
    if isinstance(event, AccountDisrupted):
        body = (
            f"{event.accounts} account(s) on {event.platform}: {event.network_id} "
            f"({event.activity}){' [synthetic]' if event.synthetic else ''}"
        )
    elif isinstance(event, NetworkIdentified):
        body = f"{event.operation_name} ({event.activity}, {event.actor.attribution})"
    elif isinstance(event, ReportReleased):
        body = f"{event.title[:80]} — {len(event.networks)} network(s)"
    return f"{head}  {body}"


def _parse_start(value: str) -> str | dt.datetime:
    if value in ("earliest", "latest"):
        return value
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            "use 'earliest', 'latest' or an ISO 8601 time such as 2026-01-01T00:00:00+00:00",
            param_hint="--from",
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


class _EventTopic(click.Choice[str]):
    """An event topic's short name; the dead-letter topic is refused with where to look instead."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if str(value) == DEAD_LETTER or str(value).endswith(f".{DEAD_LETTER}"):
            self.fail(
                "the dead-letter topic holds refused records, not events: show them, with "
                "their reasons and source positions, with 'disruptfeed dlq tail'",
                param,
                ctx,
            )
        return super().convert(value, param, ctx)


@click.command()
@click.argument("topics", nargs=-1, type=_EventTopic(EVENT_TOPICS))
@click.option(
    "--from",
    "start",
    default="latest",
    show_default=True,
    help="'earliest', 'latest', or an ISO 8601 time (UTC if no offset).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["line", "jsonl"]),
    default=None,
    hidden=True,
    help="Older spelling of --output: line is table, jsonl is jsonl.",
)
@click.option(
    "--group", default=None, help="Consumer group to read as (default: none, no commits)."
)
@click.option("--until-end", is_flag=True, help="Stop at the end of what is there now.")
@click.option(
    "--max", "limit", type=click.IntRange(min=1), default=None, help="Stop after N events."
)
@bootstrap_option
@output_option(json_alias=None, streaming=True)
@click.pass_context
def tail(
    ctx: click.Context,
    topics: tuple[str, ...],
    start: str,
    fmt: str | None,
    group: str | None,
    until_end: bool,
    limit: int | None,
    output: str,
) -> None:
    """Print events as they arrive on TOPICS (default: every event topic).

    --output table prints a readable line per event; json and jsonl the events' JSON, one per
    line (pipe it into 'disruptfeed publish -').
    """
    from consumers import InvalidRecord, Subscription

    settings = settings_from(ctx)
    if until_end and group:
        raise click.UsageError("--until-end reads whole partitions; drop --group")
    as_json = output != "table" if fmt is None else fmt == "jsonl"

    def invalid(record: InvalidRecord) -> None:
        click.secho(
            f"{record.topic}[{record.partition}]@{record.offset}: invalid: {record.error}",
            fg="yellow",
            err=True,
        )

    async def go() -> int:
        count = 0
        async with Subscription(
            topics,
            settings=settings,
            group_id=group,
            start=_parse_start(start),  # type: ignore[arg-type]
            stop_at_end=until_end,
            on_invalid=invalid,
        ) as sub:
            async for received in sub:
                if as_json:
                    sys.stdout.buffer.write(codec.encode(received.event) + b"\n")
                    sys.stdout.flush()
                else:
                    click.echo(describe(received.event))
                count += 1
                if limit is not None and count >= limit:
                    break
        return count

    try:
        count = run(go())
    except KeyboardInterrupt:
        return
    if until_end:
        click.echo(f"{count} events", err=True)


@click.command()
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    default=Path("-"),
    show_default=True,
    help="Where to write the JSON Lines.",
)
@click.option("--seed", default=DEFAULT_SEED, show_default=True, help="Seed for synthetic events.")
@click.option(
    "--accounts-per-network",
    default=20,
    show_default=True,
    type=click.IntRange(0, 100_000),
    help="Synthetic account-disruption events per network.",
)
def sample(output: Path, seed: int, accounts_per_network: int) -> None:
    """Write the sample data set as JSON Lines.

    Report and network events come from public threat-report facts (real dates, names and
    regions); account-disruption events are generated from SEED and marked synthetic.
    """
    events = build_sample(SampleSpec(seed=seed, accounts_per_network=accounts_per_network))
    data = b"".join(codec.encode(e) + b"\n" for e in events)
    if str(output) == "-":
        sys.stdout.buffer.write(data)
    else:
        output.write_bytes(data)
        click.echo(f"wrote {len(events)} events to {output}", err=True)
