"""``disruptfeed demo``: the whole product on one machine, in one command."""

from __future__ import annotations

__all__ = ["demo"]

import os
import signal
import subprocess
import sys
import time
from typing import Any

import click

from disruptfeed.cli._admin import start_broker
from disruptfeed.cli._common import fail, run, settings_from
from disruptfeed.cli._events import _progress
from disruptfeed.cli._streams import describe_alert, format_counts, worker_get
from disruptfeed.sample import DEFAULT_SEED, SampleSpec, build_sample
from disruptfeed.settings import Settings
from schemas import Alert, codec


def _wait(what: str, check: Any, proc: subprocess.Popen[bytes], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            fail(f"the worker exited with status {proc.returncode} while {what}")
        try:
            if check():
                return
        except (OSError, KeyError):
            pass  # not answering yet
        time.sleep(0.25)  # poll interval; the loop ends on the condition or the deadline
    fail(f"timed out after {timeout:.0f}s {what}")


async def _read_alerts(settings: Settings) -> list[Alert]:
    from consumers import read_alerts

    alerts = [a async for a in read_alerts(settings, start="earliest", until_end=True)]
    return sorted(alerts, key=lambda a: (a.evaluated_at, str(a.alert_id)))


@click.command()
@click.option("--seed", default=DEFAULT_SEED, show_default=True, help="Seed for synthetic events.")
@click.option("--show", default=12, show_default=True, help="Alerts to print.")
@click.pass_context
def demo(ctx: click.Context, seed: int, show: int) -> None:
    """Run the whole job locally: broker, topics, sample data, worker, counts and alerts.

    Starts the embedded broker (or uses DISRUPTFEED_BOOTSTRAP_SERVERS), publishes the sample data
    set, runs the stream worker until every sample event is counted, then prints the rolling
    counts per region and the alerts the worker raised. The broker keeps running afterwards
    ('disruptfeed broker stop' stops it); the worker is stopped.
    """
    from producers import publish_lines

    settings = settings_from(ctx)
    start_broker(settings)
    events = build_sample(SampleSpec(seed=seed))
    lines = [codec.encode(e) for e in events]
    click.secho(f"\n1/3 publishing {len(lines)} sample events", bold=True, err=True)
    with _progress(len(lines), "publishing", "events") as bar:
        report = run(publish_lines(lines, settings, on_progress=bar.update))
    click.echo(report.summary(), err=True)

    click.secho("\n2/3 running the stream worker", bold=True, err=True)
    worker = subprocess.Popen(
        [sys.executable, "-m", "disruptfeed", "worker"],
        env=dict(os.environ),
        start_new_session=True,
    )
    try:
        _wait("starting", lambda: worker_get(settings, "/health")["status"] == "ok", worker)

        def counted() -> bool:
            data = worker_get(settings, "/counts")
            total = sum(row["total"] for types in data.values() for row in types.values())
            return bool(total >= len(events))

        _wait("counting the sample", counted, worker)
        stats = worker_get(settings, "/stats")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)

    click.secho(f"\nrolling counts at stream time {stats['stream_time']}:", bold=True)
    click.echo(format_counts(_get_counts(stats)))
    alerts = run(_read_alerts(settings))
    firing = [a for a in alerts if a.status == "firing"]
    click.secho(
        f"\n3/3 alerts on {settings.topic('alerts')}: {len(firing)} firing, "
        f"{len(alerts) - len(firing)} resolved (latest {min(show, len(alerts))}):",
        bold=True,
    )
    for alert in alerts[-show:]:
        click.echo("  " + describe_alert(alert))
    click.echo(
        "\nnext: 'disruptfeed worker' keeps counting live, 'disruptfeed alerts --follow' streams "
        "alerts, 'disruptfeed tail' follows events; 'disruptfeed broker stop' when done."
    )


def _get_counts(stats: dict[str, Any]) -> dict[str, dict[str, dict[str, int]]]:
    keys = ("1h", "24h", "7d", "total")
    return {
        region: {t: {k: row[k] for k in keys} for t, row in types.items()}
        for region, types in stats["counts"].items()
    }
