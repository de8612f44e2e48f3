"""Subcommands for the stream worker: worker, counts, alerts."""

from __future__ import annotations

__all__ = [
    "alerts",
    "auth_headers",
    "count_rows",
    "counts",
    "describe_alert",
    "format_counts",
    "worker",
    "worker_get",
]

import json
import urllib.error
import urllib.request
from typing import Any

import click

from disruptfeed.cli._common import (
    EXIT_BROKER,
    LOG_FORMAT_KEY,
    announce,
    bootstrap_option,
    dispatcher_url_option,
    emit,
    fail,
    output_option,
    rules_option,
    run,
    settings_from,
    token_option,
    worker_url_option,
)
from disruptfeed.settings import Settings
from schemas import Alert


@click.command()
@click.option(
    "--loglevel",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="warning",
    show_default=True,
    help="Faust's log level.",
)
@bootstrap_option
@token_option
@rules_option
@click.pass_context
def worker(ctx: click.Context, loglevel: str) -> None:
    """Run the stream worker: rolling counts per region, alerts, and the query API.

    Consumes the three event topics from the start of their history, counts each event id once,
    sends alerts to the alerts topic and invalid records to the dead-letter topic, and serves
    counts on http://DISRUPTFEED_WORKER_HOST:DISRUPTFEED_WORKER_PORT (default 127.0.0.1:6066),
    behind the bearer token (any address but loopback needs --token or DISRUPTFEED_API_TOKEN).
    Alert rules: --rules or DISRUPTFEED_RULES_FILE (TOML), else streams/rules.toml.
    Records are counted in batches of up to DISRUPTFEED_BATCH_SIZE (500), each waiting at most
    DISRUPTFEED_BATCH_WAIT_MS (10) for its batch to fill.
    """
    from disruptfeed.auth import check_bind
    from disruptfeed.errors import DisruptFeedError
    from streams.app import run_worker

    as_json = ctx.meta.get(LOG_FORMAT_KEY) == "json"
    settings = settings_from(ctx)
    try:  # before the banner: a refusal is the only line printed
        check_bind(settings.worker_host, settings, "DISRUPTFEED_WORKER_HOST")
    except DisruptFeedError as exc:
        fail(str(exc))
    announce(
        ctx,
        f"worker: counting the {settings.topic_prefix}.* events as group "
        f"{settings.topic_prefix}-worker, API on http://{settings.worker_host}:{settings.worker_port}",
    )
    try:
        run_worker(settings, loglevel=loglevel, log_format="json" if as_json else "text")
    except DisruptFeedError as exc:
        fail(str(exc))


def auth_headers(settings: Settings) -> dict[str, str]:
    """The Authorization header for the project's HTTP APIs (empty when no token is known)."""
    tokens = settings.bearer_tokens(create=False)
    return {"Authorization": f"Bearer {tokens[0]}"} if tokens else {}


def worker_get(settings: Settings, path: str, timeout: float = 10) -> Any:
    """GET a path of the worker's query API and parse the JSON; raises ``OSError`` subclasses."""
    return _worker_get(settings, path, timeout)[0]


def _worker_get(settings: Settings, path: str, timeout: float = 10) -> tuple[Any, str | None]:
    """The JSON of a GET, and the workers whose parts it holds (X-Disruptfeed-Workers)."""
    url = settings.worker_api_url + path
    # http(s) only: Settings' pattern refuses any other scheme in the URL.
    request = urllib.request.Request(url, headers=auth_headers(settings))  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return json.load(response), response.headers.get("X-Disruptfeed-Workers")
    except urllib.error.HTTPError as exc:
        exc.close()  # release its socket before re-raising
        raise


def _get(settings: Settings, path: str) -> Any:
    url = settings.worker_api_url + path
    try:
        data, workers = _worker_get(settings, path)
        if workers:  # which worker was asked, and whose partitions the answer holds
            names = workers.split(", ")
            more = f", with the parts of {', '.join(names[1:])}" if len(names) > 1 else ""
            click.echo(f"asked the worker at {names[0]}{more}", err=True)
        return data
    except urllib.error.HTTPError as exc:
        fail(f"the worker at {url} answered {exc.code}: {exc.read().decode()[:200]}", EXIT_BROKER)
    except OSError as exc:
        fail(
            f"no worker answers at {url} ({exc}); start one with 'disruptfeed worker'",
            EXIT_BROKER,
        )


def format_counts(data: dict[str, dict[str, dict[str, int]]]) -> str:
    """A table of counts: one row per region and event type."""
    lines = [f"{'region':<8} {'event type':<19} {'1h':>7} {'24h':>7} {'7d':>7} {'total':>8}"]
    for region, types in data.items():
        for event_type, row in types.items():
            lines.append(
                f"{region:<8} {event_type:<19} {row['1h']:>7} {row['24h']:>7} {row['7d']:>7} "
                f"{row['total']:>8}"
            )
    return "\n".join(lines)


def count_rows(data: dict[str, dict[str, dict[str, int]]]) -> list[dict[str, Any]]:
    """The counts as flat rows (``--output jsonl``): region, type and the windows."""
    return [
        {"region": region, "type": event_type, **row}
        for region, types in data.items()
        for event_type, row in types.items()
    ]


@click.command()
@click.option("--region", default=None, help="One region (ISO 3166-1 alpha-2 or 'unknown').")
@worker_url_option
@token_option
@output_option()
@click.pass_context
def counts(ctx: click.Context, region: str | None, output: str) -> None:
    """Print rolling counts (1h, 24h, 7d, total) per region and event type from the worker.

    --output json prints region -> type -> windows; jsonl one row per region and type.
    """
    settings = settings_from(ctx)
    data = _get(settings, f"/counts/{region}" if region else "/counts")
    if output == "table" and not data:
        click.echo("no events counted yet" + (f" for {region}" if region else ""))
        return
    emit(output, data, count_rows(data), lambda: format_counts(data))


def describe_alert(alert: Alert) -> str:
    """One line for people: status, severity, the alert's own summary, when in stream time."""
    colour = {"critical": "red", "warning": "yellow"}.get(alert.severity)
    head = click.style(f"[{alert.status:<8} {alert.severity:<8}]", fg=colour)
    return f"{head} {alert.summary}  ({alert.evaluated_at:%Y-%m-%d %H:%MZ})"


def _alert_table(data: dict[str, Any]) -> str:
    if not data["alerts"]:
        return f"no alerts firing (stream time {data['stream_time']})"
    return "\n".join(describe_alert(Alert.model_validate(a)) for a in data["alerts"])


@click.group(invoke_without_command=True)
@click.option(
    "--follow",
    "-f",
    is_flag=True,
    help="Stream alerts from the alerts topic as the worker raises them (the on-call view).",
)
@click.option(
    "--history", is_flag=True, help="With --follow: start from the first alert ever raised."
)
@worker_url_option
@token_option
@bootstrap_option
@output_option()
@click.pass_context
def alerts(ctx: click.Context, follow: bool, history: bool, output: str) -> None:
    """Print the alerts firing now (from the worker), or follow the alert stream with --follow.

    --output json prints the worker's document (alerts, stream time); jsonl one alert per line,
    as does json with --follow. 'disruptfeed alerts tail' follows the dispatcher's live stream
    instead, with filters.
    """
    if ctx.invoked_subcommand is not None:
        return
    settings = settings_from(ctx)
    if follow:
        _follow(settings, as_json=output != "table", history=history)
        return
    data = _get(settings, "/alerts")
    emit(output, data, data["alerts"], lambda: _alert_table(data))


def _follow(settings: Settings, *, as_json: bool, history: bool) -> None:
    from consumers import read_alerts

    async def go() -> None:
        async for alert in read_alerts(settings, start="earliest" if history else "latest"):
            click.echo(alert.model_dump_json() if as_json else describe_alert(alert))

    try:
        run(go())
    except KeyboardInterrupt:
        return


@alerts.command("tail")
@click.option("--region", "regions", multiple=True, help="Only this region (repeat for more).")
@click.option("--rule", "rules", multiple=True, help="Only this rule (repeat for more).")
@click.option(
    "--severity",
    type=click.Choice(["info", "warning", "critical"]),
    default=None,
    help="Only alerts at least this severe.",
)
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(["firing", "resolved"]),
    help="Only these.",
)
@click.option("--since", default=None, help="Start at this ISO 8601 time instead of now.")
@dispatcher_url_option
@token_option
@output_option(json_alias="jsonl", streaming=True)
@click.pass_context
def tail(
    ctx: click.Context,
    regions: tuple[str, ...],
    rules: tuple[str, ...],
    severity: str | None,
    states: tuple[str, ...],
    since: str | None,
    output: str,
) -> None:
    """Follow alerts live from the dispatcher's stream (the on-call view), reconnecting on drops.

    Colour on a terminal; plain lines when piped. Ctrl-C to stop.
    """
    from consumers._stream_client import follow_sse

    settings = settings_from(ctx)
    tokens = settings.bearer_tokens(create=False)
    params: dict[str, str | list[str]] = {}
    for name, values in (("region", regions), ("rule", rules), ("state", states)):
        if values:
            params[name] = list(values)
    if severity:
        params["severity"] = severity
    if since:
        params["since"] = since

    async def go() -> None:
        stream = follow_sse(
            settings.dispatcher_api_url + "/stream/alerts",
            token=tokens[0] if tokens else None,
            params=params,
            reconnect=True,
        )
        async for message in stream:
            if message.event == "error":
                click.secho(f"stream error: {message.data}", fg="red", err=True)
                continue
            alert = Alert.model_validate_json(message.data)
            click.echo(alert.model_dump_json() if output != "table" else describe_alert(alert))

    try:
        run(go())
    except KeyboardInterrupt:
        return
