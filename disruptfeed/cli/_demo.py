"""``disruptfeed demo``: the whole product on one machine, in one command."""

from __future__ import annotations

__all__ = ["demo"]

import collections
import sys

import click

from disruptfeed.cli._admin import start_broker
from disruptfeed.cli._common import run, settings_from
from disruptfeed.cli._events import _progress, describe
from disruptfeed.sample import DEFAULT_SEED, SampleSpec, build_sample
from schemas import Event, codec


@click.command()
@click.option("--seed", default=DEFAULT_SEED, show_default=True, help="Seed for synthetic events.")
@click.option("--show", default=15, show_default=True, help="Events to print as they arrive.")
@click.pass_context
def demo(ctx: click.Context, seed: int, show: int) -> None:
    """Start the broker, create topics, publish the sample data and show it arriving."""
    from consumers import Subscription
    from producers import publish_lines

    settings = settings_from(ctx)
    start_broker(settings)
    events = build_sample(SampleSpec(seed=seed))
    lines = [codec.encode(e) for e in events]
    click.secho(f"\npublishing {len(lines)} sample events", bold=True, err=True)
    with _progress(len(lines), "publishing", "events") as bar:
        report = run(publish_lines(lines, settings, on_progress=bar.update))
    click.echo(report.summary(), err=True)

    wanted = {e.event_id for e in events}

    async def read_back() -> list[Event]:
        got: list[Event] = []
        async with Subscription(settings=settings, start="earliest", stop_at_end=True) as sub:
            async for received in sub:
                if received.event.event_id in wanted:
                    got.append(received.event)
        return got

    click.secho("\nreading the topics back:", bold=True, err=True)
    got = run(read_back())
    for event in got[:show]:
        click.echo(describe(event))
    if len(got) > show:
        click.echo(f"... and {len(got) - show} more")
    by_region = collections.Counter(e.region for e in got)
    click.secho("\nevents per actor region:", bold=True)
    for region, count in by_region.most_common():
        click.echo(f"  {region:<8} {count:>6}")
    missing = len(wanted - {e.event_id for e in got})
    click.echo(f"\n{len(got)} of {len(wanted)} sample events read back; {missing} missing")
    if missing:
        sys.exit(1)
