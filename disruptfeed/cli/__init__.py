"""The ``disruptfeed`` command."""

from __future__ import annotations

__all__ = ["main"]

import click

from disruptfeed import __version__
from disruptfeed.bench._command import bench
from disruptfeed.cli._admin import broker, schemas_group, topics
from disruptfeed.cli._audit import audit, replay
from disruptfeed.cli._common import LOG_FORMAT_KEY
from disruptfeed.cli._completion import completion
from disruptfeed.cli._demo import demo
from disruptfeed.cli._dlq import dlq_group
from disruptfeed.cli._events import publish, sample, tail
from disruptfeed.cli._rules import rules_group
from disruptfeed.cli._status import status
from disruptfeed.cli._streams import alerts, counts, worker
from disruptfeed.cli._subscriptions import dispatcher, subscriptions


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="disruptfeed")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log lines for people, or one JSON object per line (time, level, logger, message).",
)
@click.pass_context
def main(ctx: click.Context, verbose: int, log_format: str) -> None:
    """Disruption Feed: a typed Kafka feed of platform-abuse disruptions.

    Every command reads its settings from DISRUPTFEED_* environment variables; flags such as
    --bootstrap, --url, --token and --rules override them. By default they use the embedded
    broker on 127.0.0.1:19092 ('disruptfeed broker start'); --bootstrap or
    DISRUPTFEED_BOOTSTRAP_SERVERS point them at an existing cluster instead.

    Quick start: 'disruptfeed demo'.
    """
    from disruptfeed._logging import configure_logging

    ctx.meta[LOG_FORMAT_KEY] = log_format
    level = ("WARNING", "INFO", "DEBUG")[min(verbose, 2)]
    configure_logging(level, "json" if log_format == "json" else "text")


for command in (
    broker, topics, schemas_group, publish, tail, sample, demo, worker, counts, alerts,
    dispatcher, subscriptions, replay, audit, bench, completion, dlq_group, rules_group,
    status,
):  # fmt: skip
    main.add_command(command)
