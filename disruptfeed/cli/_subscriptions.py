"""Subcommands for push delivery: the dispatcher, and managing subscriptions."""

from __future__ import annotations

__all__ = ["dispatcher", "subscriptions"]

from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from disruptfeed.cli._common import (
    announce,
    bootstrap_option,
    emit,
    fail,
    output_option,
    run,
    settings_from,
    token_option,
)
from disruptfeed.settings import Settings

T = TypeVar("T")

_STATES = click.Choice(["firing", "resolved"])
_SEVERITIES = click.Choice(["info", "warning", "critical"])


@click.command()
@click.option(
    "--port", type=int, default=None, help="HTTP port [default: DISRUPTFEED_DISPATCHER_PORT, 6067]."
)
@bootstrap_option
@token_option
@click.pass_context
def dispatcher(ctx: click.Context, port: int | None) -> None:
    """Deliver alerts to subscriptions (signed webhooks, Alertmanager) and serve live streams.

    Consumes the alerts topic; each alert goes to every matching subscription, retried on
    DISRUPTFEED_WEBHOOK_RETRY_SCHEDULE (default immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h)
    and dead-lettered when the attempts run out. Serves the subscriptions API and Server-Sent
    Events at /stream/alerts and /stream/events on DISRUPTFEED_DISPATCHER_HOST:PORT
    (127.0.0.1:6067), behind the bearer token (DISRUPTFEED_API_TOKEN, or <data dir>/api-token;
    any address but loopback needs DISRUPTFEED_API_TOKEN set).
    """
    from consumers._api import serve
    from disruptfeed._loop import use_uvloop
    from disruptfeed.auth import check_bind
    from disruptfeed.errors import ConfigurationError

    settings = settings_from(ctx)
    try:
        check_bind(settings.dispatcher_host, settings, "DISRUPTFEED_DISPATCHER_HOST")
    except ConfigurationError as exc:
        fail(str(exc))
    use_uvloop()
    where = f"http://{settings.dispatcher_host}:{port or settings.dispatcher_port}"
    announce(ctx, f"dispatcher: alerts from {settings.topic('alerts')}, API on {where}")
    try:
        run(serve(settings, port=port))
    except KeyboardInterrupt:
        return


@click.group()
def subscriptions() -> None:
    """Create and manage push subscriptions (webhooks and Alertmanager endpoints).

    Subscriptions live in the compacted <prefix>.subscriptions topic; a running dispatcher picks
    up every change within about a second.
    """


def _admin_call(settings: Settings, call: Callable[[Any], Awaitable[T]]) -> T:
    from consumers._registry import SubscriptionAdmin

    async def go() -> T:
        async with SubscriptionAdmin(settings) as admin:
            return await call(admin)

    return run(go())


def _describe(sub: dict[str, Any]) -> str:
    f = sub["filter"]
    parts = [
        f"regions={','.join(f['regions']) or 'any'}",
        f"rules={','.join(f['rules']) or 'any'}",
        f"states={','.join(f['states']) or 'any'}",
        f"severity>={f['min_severity']}",
    ]
    state = sub["state"] + (f" ({sub['state_reason']})" if sub.get("state_reason") else "")
    return f"{sub['id']}  {sub['kind']:<12} {state:<8} {sub['url']}\n    {' '.join(parts)}"


@subscriptions.command("create")
@click.argument("url")
@click.option(
    "--kind",
    type=click.Choice(["webhook", "alertmanager"]),
    default="webhook",
    show_default=True,
    help="A webhook URL, or an Alertmanager's base URL.",
)
@click.option("--region", "regions", multiple=True, help="Only alerts about this region (repeat).")
@click.option("--rule", "rules", multiple=True, help="Only alerts of this rule (repeat).")
@click.option("--state", "states", multiple=True, type=_STATES, help="Only firing or resolved.")
@click.option("--min-severity", type=_SEVERITIES, default="info", show_default=True)
@click.option("--description", default="", help="A note for people.")
@click.option(
    "--from-beginning",
    is_flag=True,
    help="Also deliver every alert already kept, not only those from now on.",
)
@bootstrap_option
@output_option()
@click.pass_context
def create(ctx: click.Context, url: str, kind: str, regions: tuple[str, ...],
           rules: tuple[str, ...], states: tuple[str, ...], min_severity: str,
           description: str, from_beginning: bool, output: str) -> None:  # fmt: skip
    """Create a subscription to URL; prints its signing secret (shown only this once)."""
    from pydantic import ValidationError

    from schemas._subscriptions import AlertFilter

    settings = settings_from(ctx)
    try:
        filt = AlertFilter.model_validate(
            {"regions": regions, "rules": rules, "states": states, "min_severity": min_severity}
        )
    except ValidationError as exc:
        fail("; ".join(f"--{e['loc'][0]}: {e['msg']}" for e in exc.errors(include_url=False)))

    async def call(admin: Any) -> Any:
        return await admin.create(
            url, kind=kind, filter=filt, description=description, from_beginning=from_beginning
        )

    try:
        record, secret = _admin_call(settings, call)
    except ValidationError as exc:
        fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
    view = record.public()
    if output != "table":
        emit(output, {**view, "secret": secret}, [{**view, "secret": secret}], str)
        return
    click.echo(f"created {_describe(view)}")
    if secret:
        click.echo(f"signing secret (shown once; store it now): {secret}")


@subscriptions.command("list")
@bootstrap_option
@output_option()
@click.pass_context
def list_(ctx: click.Context, output: str) -> None:
    """List subscriptions (secrets are never shown).

    --output json prints one JSON array; jsonl one subscription per line.
    """

    async def call(admin: Any) -> list[dict[str, Any]]:
        return [s.public() for s in admin.all()]

    rows = _admin_call(settings_from(ctx), call)
    if output == "table" and not rows:
        click.echo("no subscriptions; create one with 'disruptfeed subscriptions create URL'")
        return
    emit(output, rows, rows, lambda: "\n".join(_describe(row) for row in rows))


@subscriptions.command("show")
@click.argument("sub_id", metavar="ID")
@bootstrap_option
@output_option()
@click.pass_context
def show(ctx: click.Context, sub_id: str, output: str) -> None:
    """Show one subscription and how its deliveries went (delivered, retrying, dead-lettered)."""

    async def call(admin: Any) -> tuple[dict[str, Any], list[Any]]:
        return admin.get(sub_id).public(), await admin.deliveries(sub_id, limit=0)

    view, attempts = _admin_call(settings_from(ctx), call)
    finals: dict[tuple[str, int], str] = {}
    for a in attempts:
        finals[(a.webhook_id, a.sequence)] = a.outcome
    outcomes = Counter(finals.values())
    failures = [a for a in attempts if a.outcome != "delivered"]
    view["deliveries"] = {
        "delivered": outcomes.get("delivered", 0),
        "retrying": outcomes.get("retrying", 0),
        "dead_lettered": outcomes.get("dead-lettered", 0),
        "dropped": outcomes.get("dropped", 0),
        "attempts": len(attempts),
        "last_error": failures[-1].error if failures else None,
    }
    if output != "table":
        emit(output, view, [view], str)
        return
    click.echo(_describe(view))
    d = view["deliveries"]
    click.echo(
        f"    deliveries: {d['delivered']} delivered, {d['retrying']} retrying, "
        f"{d['dead_lettered']} dead-lettered, {d['dropped']} dropped ({d['attempts']} attempts)"
    )
    if d["last_error"]:
        click.echo(f"    last error: {d['last_error']}")


def _state_command(name: str, state: str, help_text: str) -> None:
    @subscriptions.command(name, help=help_text)
    @click.argument("sub_id", metavar="ID")
    @bootstrap_option
    @click.pass_context
    def command(ctx: click.Context, sub_id: str) -> None:
        async def call(admin: Any) -> Any:
            return await admin.set_state(sub_id, state)

        record = _admin_call(settings_from(ctx), call)
        click.echo(f"{record.id} is {record.state}")


_state_command("pause", "paused", "Pause deliveries; alerts matched meanwhile wait for resume.")
_state_command("resume", "active", "Resume a paused (or disabled) subscription.")


@subscriptions.command("rotate-secret")
@click.argument("sub_id", metavar="ID")
@bootstrap_option
@click.pass_context
def rotate_secret(ctx: click.Context, sub_id: str) -> None:
    """Give a webhook subscription a new signing secret (the old one signs too for 24 h)."""

    async def call(admin: Any) -> Any:
        return await admin.rotate_secret(sub_id)

    _, secret = _admin_call(settings_from(ctx), call)
    click.echo(f"new signing secret (shown once; the old one stays valid 24 h): {secret}")


@subscriptions.command("delete")
@click.argument("sub_id", metavar="ID")
@bootstrap_option
@click.pass_context
def delete(ctx: click.Context, sub_id: str) -> None:
    """Delete a subscription; deliveries still pending for it are dropped."""

    async def call(admin: Any) -> None:
        await admin.delete(sub_id)

    _admin_call(settings_from(ctx), call)
    click.echo(f"deleted {sub_id}")


@subscriptions.command("deliveries")
@click.argument("sub_id", metavar="ID")
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
@bootstrap_option
@output_option(json_alias="jsonl")
@click.pass_context
def deliveries(ctx: click.Context, sub_id: str, limit: int, output: str) -> None:
    """Show the last delivery attempts of a subscription, oldest first.

    --output json prints one JSON array; jsonl one attempt per line.
    """

    async def call(admin: Any) -> list[Any]:
        return list(await admin.deliveries(sub_id, limit=limit))

    attempts = _admin_call(settings_from(ctx), call)
    if output != "table":
        rows = [a.model_dump(mode="json") for a in attempts]
        emit(output, rows, rows, str)
        return
    if not attempts:
        click.echo("no delivery attempts yet")
    for a in attempts:
        status = a.status_code if a.status_code is not None else "-"
        latency = f"{a.latency_ms:.0f}ms" if a.latency_ms is not None else "-"
        line = f"{a.at:%Y-%m-%d %H:%M:%S}Z #{a.sequence:<5} try {a.attempt} {a.outcome:<13} "
        line += f"{status!s:>4} {latency:>7}  {a.alert_id}"
        click.echo(line + (f"  {a.error}" if a.error else ""))
