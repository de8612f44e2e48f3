"""``disruptfeed status``: broker, topics, workers, lag, alerts and dead letters on one screen."""

from __future__ import annotations

__all__ = ["format_status", "status"]

import logging
import sys
from typing import Any

import click

from disruptfeed.cli._common import (
    EXIT_BROKER,
    bootstrap_option,
    emit,
    output_option,
    run,
    settings_from,
    token_option,
    worker_url_option,
)

_OK = click.style("ok", fg="green")


def _bad(text: str) -> str:
    return click.style(text, fg="red")


def _head(name: str, section: dict[str, Any], summary: str) -> str:
    state = summary if section.get("ok") else _bad(str(section.get("error", "unknown")))
    return f"{click.style(f'{name:<13}', bold=True)}{state}"


def _short(topic: str, prefix: str) -> str:
    return topic.removeprefix(prefix + ".")


def _broker(doc: dict[str, Any]) -> list[str]:
    b = doc["broker"]
    if not b.get("ok"):
        return [_head("broker", b, "")]
    nodes = ", ".join(f"{n['node_id']}={n['host']}:{n['port']}" for n in b["brokers"])
    summary = (
        f"{_OK}: cluster {b['cluster_id']}, controller {b['controller_id']}, "
        f"{len(b['brokers'])} broker(s): {nodes}"
    )
    return [_head("broker", b, summary)]


def _topics(doc: dict[str, Any]) -> list[str]:
    t = doc["topics"]
    if not t.get("ok"):
        return [_head("topics", t, "")]
    rows = t["topics"]
    present = sum(1 for r in rows if r["exists"])
    problems = t["problems"]
    state = _OK if not problems else _bad(f"{len(problems)} problem(s)")
    lines = [_head("topics", t, f"{state}: {present} of {len(rows)} present")]
    lines.append(f"  {'topic':<24} {'parts':>5} {'rf':>3} {'cleanup':<8} {'min ISR':>7}")
    for r in rows:
        name = _short(r["name"], doc["topic_prefix"])
        if not r["exists"]:
            lines.append(f"  {name:<24} {_bad('missing')}")
            continue
        lines.append(
            f"  {name:<24} {r['partitions']:>5} {r['replication_factor']:>3} "
            f"{r['cleanup_policy'] or '-':<8} {r['min_insync_replicas'] or '-':>7}"
        )
    lines += [f"  {_bad('!')} {p}" for p in problems]
    return lines


def _workers(doc: dict[str, Any]) -> list[str]:
    w, api = doc["workers"], doc["workers"].get("api", {})
    lines = []
    if w.get("ok"):
        count = len(w["members"])
        state = _OK if count else _bad("no worker running")
        lines.append(
            _head("workers", w, f"{state}: group {w['group']} {w['state']}, {count} member(s)")
        )
        for m in w["members"]:
            parts = "; ".join(
                f"{_short(topic, doc['topic_prefix'])} {','.join(map(str, ps))}"
                for topic, ps in m["partitions"].items()
            )
            lines.append(
                f"  {m['url'] or m['client_id']} (host {m['client_host'].lstrip('/')}): "
                f"{parts or 'no source partitions'}"
            )
    else:
        lines.append(_head("workers", w, ""))
    if api.get("ok"):
        status = api.get("status")
        shown = _OK if status == "ok" else _bad(str(status))
        lines.append(
            f"  api {api['url']}: {shown}, stream time {api.get('stream_time') or '-'}, "
            f"{api.get('processed', 0)} records processed"
        )
    else:
        lines.append(f"  api: {_bad(str(api.get('error', 'not asked')))}")
    return lines


def _lag(doc: dict[str, Any]) -> list[str]:
    lag = doc["lag"]
    if not lag.get("ok"):
        return [_head("lag", lag, "")]
    state = _OK if lag["total"] == 0 else click.style(str(lag["total"]), fg="yellow")
    lines = [_head("lag", lag, f"{state}: {lag['total']} records behind (group {lag['group']})")]
    by_topic: dict[str, list[str]] = {}
    for p in lag["partitions"]:
        committed = p["committed"] if p["committed"] is not None else "none"
        by_topic.setdefault(p["topic"], []).append(
            f"p{p['partition']} {p['lag']} (end {p['end']}, committed {committed})"
        )
    for topic, parts in by_topic.items():
        lines.append(f"  {_short(topic, doc['topic_prefix']):<20} " + "  ".join(parts))
    return lines


def _alerts(doc: dict[str, Any]) -> list[str]:
    a = doc["alerts"]
    if not a.get("ok"):
        return [_head("alerts", a, "")]
    lines = [_head("alerts", a, f"{a['firing']} firing (stream time {a['stream_time'] or '-'})")]
    colour = {"critical": "red", "warning": "yellow"}
    for alert in a["alerts"]:
        severity = click.style(f"{alert['severity']:<8}", fg=colour.get(alert["severity"]))
        lines.append(f"  {severity} {alert['summary']}")
    return lines


def _dead_letters(doc: dict[str, Any]) -> list[str]:
    d = doc["dead_letters"]
    if not d.get("ok"):
        return [_head("dead letters", d, "")]
    count = d["last_hour"]
    shown = _OK if count == 0 else click.style(str(count), fg="yellow")
    return [_head("dead letters", d, f"{shown}: {count} in the last hour on {d['topic']}")]


def format_status(doc: dict[str, Any]) -> str:
    """The status document as one screen of text."""
    lines = [f"disruptfeed status at {doc['at']}: {doc['bootstrap']}, prefix {doc['topic_prefix']}"]
    for part in (_broker, _topics, _workers, _lag, _alerts, _dead_letters):
        lines += part(doc)
    return "\n".join(lines)


@click.command()
@bootstrap_option
@worker_url_option
@token_option
@output_option(json_alias=None)
@click.pass_context
def status(ctx: click.Context, output: str) -> None:
    """Show the feed on one screen: broker, topics, workers, lag, alerts, dead letters.

    Broker reachable (cluster id, brokers); each topic's partitions, replication, cleanup
    policy and min ISR, with what 'topics create' would refuse flagged; the worker group's
    members and their source partitions, and the worker's /health at --url; lag per source
    partition (end offset minus the group's committed offset); alerts firing now (the worker's
    /alerts); dead letters in the last hour. A section that cannot be reached says so; the rest
    is still shown. --output json prints the whole document, jsonl one section per line.
    Exits 3 when the broker cannot be reached, else 0.
    """
    from disruptfeed._status import SECTIONS, gather_status

    settings = settings_from(ctx)
    client_log = logging.getLogger("aiokafka")
    level = client_log.level
    if logging.getLogger().getEffectiveLevel() > logging.INFO:
        # Every failure is reported in its section; the client's own ERROR lines for a broker
        # that does not answer would only repeat it (-v shows them).
        client_log.setLevel(logging.CRITICAL)
    try:
        doc = run(gather_status(settings))
    finally:
        client_log.setLevel(level)
    rows = [{"section": name, **doc[name]} for name in SECTIONS]
    emit(output, doc, rows, lambda: format_status(doc))
    if not doc["broker"].get("ok"):
        sys.exit(EXIT_BROKER)
