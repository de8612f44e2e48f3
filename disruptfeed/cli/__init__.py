"""The ``disruptfeed`` command."""

from __future__ import annotations

__all__ = ["main"]

import logging

import click

from disruptfeed import __version__
from disruptfeed.bench._command import bench
from disruptfeed.cli._admin import broker, schemas_group, topics
from disruptfeed.cli._audit import audit, replay
from disruptfeed.cli._demo import demo
from disruptfeed.cli._events import publish, sample, tail
from disruptfeed.cli._streams import alerts, counts, worker
from disruptfeed.cli._subscriptions import dispatcher, subscriptions


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="disruptfeed")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def main(verbose: int) -> None:
    """Disruption Feed: a typed Kafka feed of platform-abuse disruptions.

    Every command reads its settings from DISRUPTFEED_* environment variables. By default they
    use the embedded broker on 127.0.0.1:19092 ('disruptfeed broker start'); set
    DISRUPTFEED_BOOTSTRAP_SERVERS to use an existing cluster instead.

    Quick start: 'disruptfeed demo'.
    """
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


for command in (
    broker, topics, schemas_group, publish, tail, sample, demo, worker, counts, alerts,
    dispatcher, subscriptions, replay, audit, bench,
):  # fmt: skip
    main.add_command(command)
