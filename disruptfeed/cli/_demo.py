"""``disruptfeed demo``: the whole product on one machine, in one command."""

from __future__ import annotations

__all__ = ["demo"]

import contextlib
import http.server
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import click

from disruptfeed.cli._admin import start_broker
from disruptfeed.cli._common import (
    LOG_FORMAT_KEY,
    bootstrap_option,
    fail,
    progress,
    run,
    settings_from,
)
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


class _DemoReceiver(http.server.ThreadingHTTPServer):
    """A local webhook endpoint that checks each delivery's signature, as a subscriber would."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _DemoHandler)
        self.secret = ""
        self.verified: dict[str, int] = {}  # webhook-id -> sequence
        self.rejected = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class _DemoHandler(http.server.BaseHTTPRequestHandler):
    server: _DemoReceiver

    def do_POST(self) -> None:
        from consumers._webhooks import sign

        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        msg_id = self.headers.get("webhook-id", "")
        stamp = int(self.headers.get("webhook-timestamp", "0"))
        expected = f"v1,{sign(self.server.secret, msg_id, stamp, body)}"
        if expected in self.headers.get("webhook-signature", "").split(" "):
            self.server.verified[msg_id] = int(self.headers.get("webhook-sequence", "0"))
            self.send_response(204)
        else:
            self.server.rejected += 1
            self.send_response(400)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: the demo prints a summary


@contextlib.contextmanager
def _dispatching(settings: Settings) -> Iterator[_DemoReceiver]:
    """A dispatcher and a local webhook receiver subscribed to every alert kept."""
    from consumers._registry import SubscriptionAdmin

    receiver = _DemoReceiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    local = settings.model_copy(update={"webhook_allow_private": True})

    async def subscribe() -> str:
        async with SubscriptionAdmin(local) as admin:
            record, secret = await admin.create(
                receiver.url, description="disruptfeed demo receiver", from_beginning=True
            )
        receiver.secret = secret or ""
        return record.id

    async def unsubscribe(sub_id: str) -> None:
        async with SubscriptionAdmin(local) as admin:
            await admin.delete(sub_id)

    sub_id = run(subscribe())
    env = {**os.environ, "DISRUPTFEED_WEBHOOK_ALLOW_PRIVATE": "true"}
    dispatcher = subprocess.Popen(_child(settings, "dispatcher"), env=env, start_new_session=True)
    try:
        yield receiver
    finally:
        dispatcher.send_signal(signal.SIGTERM)
        dispatcher.wait(timeout=60)
        run(unsubscribe(sub_id))
        receiver.shutdown()
        receiver.server_close()


def _child(settings: Settings, command: str) -> list[str]:
    """The command line of a worker or dispatcher the demo starts: this one's flags passed on."""
    args = [sys.executable, "-m", "disruptfeed"]
    log_format = click.get_current_context().meta.get(LOG_FORMAT_KEY)
    if log_format:
        args += ["--log-format", log_format]
    args.append(command)
    if settings.bootstrap_servers:
        args += ["--bootstrap", settings.bootstrap_servers]
    return args


@click.command()
@click.option("--seed", default=DEFAULT_SEED, show_default=True, help="Seed for synthetic events.")
@click.option("--show", default=12, show_default=True, help="Alerts to print.")
@bootstrap_option
@click.pass_context
def demo(ctx: click.Context, seed: int, show: int) -> None:
    """Run the whole job locally: broker, sample data, worker, counts, alerts and their push.

    Starts the embedded broker (or uses DISRUPTFEED_BOOTSTRAP_SERVERS), publishes the sample data
    set, runs the stream worker until every sample event is counted, then prints the rolling
    counts per region and the alerts the worker raised, and pushes them through a dispatcher to
    a local webhook receiver that verifies every signature. The broker keeps running afterwards
    ('disruptfeed broker stop' stops it); the worker is stopped.
    """
    from producers import publish_lines

    settings = settings_from(ctx)
    start_broker(settings)
    events = build_sample(SampleSpec(seed=seed))
    lines = [codec.encode(e) for e in events]
    click.secho(f"\n1/4 publishing {len(lines)} sample events", bold=True, err=True)
    with progress(len(lines), "publishing", "events") as bar:
        report = run(publish_lines(lines, settings, on_progress=bar.update))
    click.echo(report.summary(), err=True)

    click.secho("\n2/4 running the stream worker", bold=True, err=True)
    worker = subprocess.Popen(
        _child(settings, "worker"),
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
        f"\n3/4 alerts on {settings.topic('alerts')}: {len(firing)} firing, "
        f"{len(alerts) - len(firing)} resolved (latest {min(show, len(alerts))}):",
        bold=True,
    )
    for alert in alerts[-show:]:
        click.echo("  " + describe_alert(alert))

    click.secho("\n4/4 pushing the alerts to a local webhook subscriber", bold=True, err=True)
    expected = len({a.alert_id for a in alerts})
    with _dispatching(settings) as receiver:
        deadline = time.monotonic() + 120
        while len(receiver.verified) < expected and time.monotonic() < deadline:
            time.sleep(0.25)  # poll interval; the loop ends on the condition or the deadline
    sequences = sorted(receiver.verified.values())
    gap_free = sequences == list(range(1, len(sequences) + 1))
    click.echo(
        f"  {len(receiver.verified)} of {expected} alerts delivered as signed webhooks, "
        f"every signature verified, {receiver.rejected} rejected; sequence numbers "
        f"1..{len(sequences)} {'with no gap' if gap_free else 'WITH GAPS'}"
    )
    click.echo(
        "\nnext: 'disruptfeed worker' keeps counting live, 'disruptfeed dispatcher' pushes "
        "alerts to 'disruptfeed subscriptions create URL', 'disruptfeed alerts tail' follows them, "
        "'disruptfeed tail' follows events; 'disruptfeed broker stop' when done."
    )


def _get_counts(stats: dict[str, Any]) -> dict[str, dict[str, dict[str, int]]]:
    keys = ("1h", "24h", "7d", "total")
    return {
        region: {t: {k: row[k] for k in keys} for t, row in types.items()}
        for region, types in stats["counts"].items()
    }
