"""Subcommands for auditors: replay a time range of the history."""

from __future__ import annotations

__all__ = ["audit", "replay"]

import asyncio
import datetime as dt
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from disruptfeed.cli._common import (
    EXIT_BROKER,
    EXIT_REJECTED,
    EXIT_USAGE,
    bootstrap_option,
    fail,
    progress,
    rules_option,
    run,
    settings_from,
    token_option,
    worker_url_option,
)
from disruptfeed.errors import ConfigurationError


def _time(value: str, option: str) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        fail(f"{option} {value!r} is not an ISO 8601 time; use e.g. 2026-10-01T00:00Z", EXIT_USAGE)
    if when.tzinfo is None:
        fail(f"{option} {value!r} has no timezone; add one, e.g. {value}Z", EXIT_USAGE)
    return when


def _totalled(bar: Any) -> Callable[[int], None]:
    """Set a progress bar's total once it is known."""

    def total(n: int) -> None:
        bar.total = n
        bar.refresh()

    return total


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
@bootstrap_option
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
    with progress(None, "replaying", "records") as bar:
        result = run(run_replay(settings, spec, on_progress=bar.update, on_total=_totalled(bar)))
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


@click.group()
def audit() -> None:
    """Prove the history complete and unaltered: signed Merkle checkpoints, and their check.

    'audit checkpoint' signs the history so far (RFC 6962 Merkle root, per-partition end
    offsets, a link to the previous checkpoint; Ed25519, key DISRUPTFEED_AUDIT_KEY_FILE) to the
    checkpoint topic and DISRUPTFEED_CHECKPOINT_DIR. 'audit verify' recomputes everything.
    'recount', 'alerts' and 'reports' hold the worker's counts, the alert topic and the
    reports' claims against what the history alone gives.
    """


@audit.command("checkpoint")
@click.option(
    "--follow",
    is_flag=True,
    help="Keep checkpointing every DISRUPTFEED_CHECKPOINT_INTERVAL_SECONDS (60) until stopped.",
)
@bootstrap_option
@click.pass_context
def checkpoint_command(ctx: click.Context, follow: bool) -> None:
    """Sign a checkpoint of every event stored so far (generating the key on first use)."""
    from disruptfeed._keys import load_signing_key
    from disruptfeed.audit._checkpoint import make_checkpoint

    settings = settings_from(ctx)
    try:
        key = load_signing_key(settings, create=True)
    except ConfigurationError as exc:
        fail(str(exc), EXIT_USAGE)

    async def once() -> None:
        cp = await make_checkpoint(settings, key)
        added = sum(r.count for r in cp.ranges.values())
        click.echo(
            f"checkpoint {cp.seq}: {cp.tree_size} events (+{added}), root {cp.root}, "
            f"key {cp.key_id}, file {settings.checkpoint_path}/checkpoint-{cp.seq:08d}.json"
        )

    async def forever() -> None:
        while True:
            await once()
            await asyncio.sleep(settings.checkpoint_interval_seconds)

    try:
        run(forever() if follow else once())
    except KeyboardInterrupt:
        return


@audit.command("verify")
@click.option(
    "--checkpoints",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Verify against the checkpoint files of this directory [default: the checkpoint topic].",
)
@click.option(
    "--since",
    default=None,
    help="Only checkpoints made at or after this time (ISO 8601); the one before is the base.",
)
@click.option("--until", default=None, help="Only checkpoints made up to this time (ISO 8601).")
@bootstrap_option
@click.pass_context
def verify_command(
    ctx: click.Context, directory: Path | None, since: str | None, until: str | None
) -> None:
    """Recompute the history's Merkle tree and hold it against every signed checkpoint.

    Reports altered, missing, added, duplicated and reordered events (with their partition and
    offsets), events with a bad signature, no signature or an unknown or retired key, gaps in
    a source's sequence numbers, and bad signatures, unknown keys, missing checkpoints and
    broken links of checkpoints. With --since/--until, only the checkpoints made in that range
    and the events they cover are checked. Exits 1 on any finding, 2 on unusable input
    (times, key or checkpoint files), 0 when all is valid.
    """
    from disruptfeed._keys import trusted_keys
    from disruptfeed.audit._checkpoint import (
        load_checkpoint_files,
        parse_checkpoint,
        read_checkpoints,
    )
    from disruptfeed.audit._verify import select, verify

    settings = settings_from(ctx)
    start = _time(since, "--since") if since is not None else None
    end = _time(until, "--until") if until is not None else None
    if start is not None and end is not None and end <= start:
        fail(f"--until ({until}) must be after --since ({since}); swap them", EXIT_USAGE)
    try:
        keys = trusted_keys(settings)
        if directory is not None:
            checkpoints = load_checkpoint_files(directory)
        else:
            checkpoints = [
                parse_checkpoint(value, f"checkpoint record at offset {offset}")
                for offset, value in run(read_checkpoints(settings))
            ]
    except ConfigurationError as exc:
        fail(str(exc), EXIT_USAGE)
    if not checkpoints:
        fail(
            "there is no checkpoint to verify against; run 'disruptfeed audit checkpoint' first",
            EXIT_USAGE,
        )
    if not select(checkpoints, start, end)[1]:
        fail(
            f"no checkpoint was made between {since or 'the start'} and {until or 'now'}; "
            "widen the range, or list them with 'ls' on the checkpoint directory",
            EXIT_USAGE,
        )
    with progress(None, "verifying", "events") as bar:
        report = run(
            verify(settings, checkpoints, keys, on_progress=bar.update, since=start, until=end)
        )
    for finding in report.findings:
        click.secho(str(finding), fg="red", err=True)
    summary = (
        f"{report.checkpoints} checkpoints, {report.events_verified} events verified, "
        f"{report.not_yet_covered} not yet covered by a checkpoint"
    )
    if report.ok:
        click.echo(f"valid: {summary}")
        return
    counts = ", ".join(f"{kind} {n}" for kind, n in sorted(report.counts().items()))
    click.echo(f"INVALID: {summary}; {counts}")
    sys.exit(EXIT_REJECTED)


@audit.command("recount")
@click.option(
    "--at",
    default=None,
    help="Windows ending at this time (ISO 8601) [default: the worker's stream time].",
)
@bootstrap_option
@worker_url_option
@token_option
@rules_option
@click.pass_context
def recount_command(ctx: click.Context, at: str | None) -> None:
    """Recompute the rolling counts from the history alone and diff them with the worker's.

    Every stored event goes through the worker's own counting code with the configured rules
    and grace; the result is held against the worker's GET /counts?at=... (so the worker must
    run; --url and --token say where). Prints 'no difference'
    and exits 0 when they agree, else one line per differing count and exits 1. 'total' is
    every event counted so far, whatever --at.
    """
    import urllib.error
    import urllib.parse

    from disruptfeed.cli._streams import worker_get
    from streams._recount import diff_counts, recount

    settings = settings_from(ctx)
    when = _time(at, "--at") if at is not None else None
    url = settings.worker_api_url
    try:
        stream_time = worker_get(settings, "/stats").get("stream_time")
        if when is None:
            if stream_time is None:
                fail("the worker has counted no event yet; pass --at, or wait", EXIT_USAGE)
            when = dt.datetime.fromisoformat(stream_time)
        query = urllib.parse.urlencode({"at": when.isoformat()})
        theirs = worker_get(settings, f"/counts?{query}")
    except urllib.error.HTTPError as exc:
        fail(f"the worker at {url} answered {exc.code}: {exc.read().decode()[:200]}", EXIT_BROKER)
    except OSError as exc:
        fail(
            f"no worker answers at {url} ({exc}); start one with 'disruptfeed worker'", EXIT_BROKER
        )
    with progress(None, "recounting", "records") as bar:
        processor = run(recount(settings, bar.update)).processor
    ours = processor.store.snapshot(now_ms=int(when.timestamp() * 1000))
    diffs = diff_counts(ours, theirs)
    series = sum(len(types) for types in ours.values())
    if not diffs:
        click.echo(
            f"no difference at {when.isoformat()}: {series} series in {len(ours)} regions, "
            f"{processor.stats.processed} records recounted"
        )
        return
    for diff in diffs:
        click.secho(str(diff), fg="red", err=True)
    click.echo(
        f"DIFFERENT at {when.isoformat()}: {len(diffs)} counts differ (the worker's stream "
        f"time is {stream_time}; a worker still catching up counts less)"
    )
    sys.exit(EXIT_REJECTED)


@audit.command("alerts")
@click.option("--since", required=True, help="Start of the evaluation-time range (ISO 8601).")
@click.option("--until", required=True, help="End of the range (ISO 8601, exclusive).")
@bootstrap_option
@rules_option
@click.pass_context
def alerts_command(ctx: click.Context, since: str, until: str) -> None:
    """Re-derive the alerts from history with the configured rules; diff with the alert topic.

    The history goes through the worker's own code (DISRUPTFEED_RULES_FILE, grace); alerts
    whose stream-time evaluation falls in [--since, --until) are compared by id (derived from
    fingerprint, status, start and repeat, so same id means same transition). Lists alerts
    missing from the topic and unexpected on it; exits 1 on any, 0 when they agree.
    """
    from consumers import read_alerts
    from streams._recount import diff_alerts, recount

    settings = settings_from(ctx)
    start, end = _time(since, "--since"), _time(until, "--until")
    if end <= start:
        fail(f"--until ({until}) must be after --since ({since}); swap them", EXIT_USAGE)

    async def published() -> list[Any]:
        return [a async for a in read_alerts(settings, start="earliest", until_end=True)]

    with progress(None, "re-deriving", "records") as bar:
        derived = run(recount(settings, bar.update)).alerts
    diffs, repeats = diff_alerts(derived, run(published()), start, end)
    in_range = sum(1 for a in derived if start <= a.evaluated_at < end)
    for diff in diffs:
        click.secho(str(diff), fg="red", err=True)
    note = f"; {repeats} published twice (not a difference)" if repeats else ""
    if not diffs:
        click.echo(f"no difference: {in_range} alerts re-derived and published alike{note}")
        return
    click.echo(f"DIFFERENT: {len(diffs)} alerts differ of {in_range} re-derived{note}")
    sys.exit(EXIT_REJECTED)


@audit.command("reports")
@bootstrap_option
@click.pass_context
def reports_command(ctx: click.Context) -> None:
    """Check each ReportReleased event's claims against the history; list the mismatches.

    A report's networks must each be identified by a NetworkIdentified event, and a cumulative
    claim such as 'more than 20 operations disrupted' must hold for the networks its publisher
    had identified by the report's date. Exits 1 on any mismatch, 0 when every claim holds.
    """
    from disruptfeed.audit._replay import ReplayFilter
    from disruptfeed.audit._replay import replay as run_replay
    from disruptfeed.audit._reports import check_reports

    settings = settings_from(ctx)
    everything = ReplayFilter(
        since=dt.datetime(1970, 1, 2, tzinfo=dt.UTC),
        until=dt.datetime(9999, 1, 1, tzinfo=dt.UTC),
        types=("network.identified", "report.released"),
    )
    with progress(None, "reading", "records") as bar:
        result = run(
            run_replay(settings, everything, on_progress=bar.update, on_total=_totalled(bar))
        )
    checks = check_reports(item.event for item in result.events)
    mismatches = 0
    for check in checks:
        for mismatch in check.mismatches:
            click.secho(f"{check.report_id}: {mismatch}", fg="red", err=True)
        for claim in check.uncheckable:
            click.echo(f"{check.report_id}: not checkable (no count in it): {claim!r}", err=True)
        mismatches += len(check.mismatches)
    claims = sum(c.checked for c in checks)
    summary = f"{len(checks)} reports, {claims} claims checked"
    if not mismatches:
        click.echo(f"no mismatch: {summary}")
        return
    click.echo(f"MISMATCHES: {mismatches} of {summary}")
    sys.exit(EXIT_REJECTED)
