"""Subcommands for auditors: replay a time range of the history."""

from __future__ import annotations

__all__ = ["replay"]

import datetime as dt
import os
import sys
import tempfile
from pathlib import Path

import click

from disruptfeed.cli._common import EXIT_USAGE, fail, run, settings_from
from disruptfeed.cli._events import _progress
from disruptfeed.errors import ConfigurationError


def _time(value: str, option: str) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        fail(f"{option} {value!r} is not an ISO 8601 time; use e.g. 2026-10-01T00:00Z", EXIT_USAGE)
    if when.tzinfo is None:
        fail(f"{option} {value!r} has no timezone; add one, e.g. {value}Z", EXIT_USAGE)
    return when


def _write_atomically(out: Path, data: bytes) -> None:
    """All of ``data`` at ``out``, or nothing: a killed replay leaves no half file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@click.command()
@click.option("--since", required=True, help="Start of the event-time range (ISO 8601, inclusive).")
@click.option("--until", required=True, help="End of the event-time range (ISO 8601, exclusive).")
@click.option(
    "--type",
    "types",
    multiple=True,
    help="Only this event type (account.disrupted, network.identified, report.released).",
)
@click.option("--region", "regions", multiple=True, help="Only this actor region (repeat).")
@click.option("--network", "networks", multiple=True, help="Only events about this network id.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "stix"]),
    default="jsonl",
    show_default=True,
    help="JSON Lines of the stored events, or a STIX 2.1 bundle.",
)
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    default=Path("-"),
    show_default=True,
    help="Where to write ('-': stdout). Written whole or not at all.",
)
@click.pass_context
def replay(
    ctx: click.Context,
    since: str,
    until: str,
    types: tuple[str, ...],
    regions: tuple[str, ...],
    networks: tuple[str, ...],
    fmt: str,
    out: Path,
) -> None:
    """Replay the events of an event-time range from the history topics, for audits.

    Reads from just before the range (the publishers' allowed clock skew) up to the end of each
    topic as it was when the replay started, committed data only, and writes every event whose
    occurred_at is in [--since, --until) once, ordered by event time then event id: the same
    command over the same history writes the same bytes. JSON Lines hold the exact stored
    record values. A summary (events, records scanned, duplicates, invalid records) goes to
    stderr. Bad arguments exit 2 and write nothing.
    """
    from disruptfeed.audit._replay import ReplayFilter
    from disruptfeed.audit._replay import replay as run_replay

    settings = settings_from(ctx)
    try:
        spec = ReplayFilter(
            _time(since, "--since"), _time(until, "--until"), types, regions, networks
        )
    except ConfigurationError as exc:
        fail(str(exc), EXIT_USAGE)
    with _progress(None, "replaying", "records") as bar:
        result = run(run_replay(settings, spec, on_progress=bar.update))
    if fmt == "jsonl":
        data = b"".join(e.value + b"\n" for e in result.events)
    else:
        from disruptfeed.audit._stix import dumps_bundle, stix_bundle

        data = dumps_bundle(stix_bundle([e.event for e in result.events]))
    if str(out) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        _write_atomically(out, data)
    click.echo(
        f"replayed {len(result.events)} events ({result.scanned} records scanned, "
        f"{result.duplicates} duplicates skipped, {len(result.invalid)} invalid)",
        err=True,
    )
