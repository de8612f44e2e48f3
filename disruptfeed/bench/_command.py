"""``disruptfeed bench``: every case, side by side, as JSON and a Markdown table."""

from __future__ import annotations

__all__ = ["bench"]

import asyncio
import contextlib
import dataclasses
import importlib.util
import json
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from disruptfeed.bench._report import CASES, CaseResult
from disruptfeed.cli._common import (
    EXIT_BROKER,
    EXIT_CONFIG,
    EXIT_REJECTED,
    bootstrap_option,
    fail,
    progress,
    settings_from,
)

if TYPE_CHECKING:
    from disruptfeed.bench._runner import Bench
    from disruptfeed.settings import Settings

_EXTRAS = (
    ("confluent_kafka", "confluent-kafka"),
    ("quixstreams", "quixstreams"),
    ("hdrh", "hdrhistogram"),
)
"""The bench extra's modules, and the distributions that provide them."""
_PLOT = ("matplotlib", "matplotlib")
"""What --curves also needs (in the bench extra too)."""


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """Turn SIGTERM into SystemExit, so ``finally`` blocks stop the worker, Quix and broker."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _say(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


@click.command()
@click.option("--quick", is_flag=True, help="Small workloads, one run: a smoke test (< 3 min).")
@click.option(
    "--runs",
    type=click.IntRange(1, 99),
    default=None,
    help="Runs per case, reported as median, min and max.  [default: 3; with --quick: 1]",
)
@click.option(
    "--json",
    "json_file",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Also write the whole result document (figures, ratios, environment) here.",
)
@click.option(
    "--case",
    "only",
    multiple=True,
    type=click.Choice([spec.name for spec in CASES]),
    help="Run only this case (repeatable); ratios need their peers' figures.",
)
@click.option(
    "--yes",
    "-y",
    is_flag=True,
    help="Against a cluster of yours (DISRUPTFEED_BOOTSTRAP_SERVERS): create and delete the "
    "bench's own bench-* topics without asking.",
)
@click.option(
    "--curves",
    is_flag=True,
    help="Instead of the cases: how cost grows with the work (regions, history, partitions, "
    "workers, replay size); saves the points as JSON (--json, default bench-curves.json) and "
    "a plot (--plot).",
)
@click.option(
    "--plot",
    "plot_file",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="With --curves: the PNG to draw the curves into.  [default: bench-curves.png]",
)
@bootstrap_option
@click.pass_context
def bench(
    ctx: click.Context,
    quick: bool,
    runs: int | None,
    json_file: Path | None,
    only: tuple[str, ...],
    yes: bool,
    curves: bool,
    plot_file: Path | None,
) -> None:
    """Benchmark the feed against Kafka's own tools and the raw Python clients, side by side.

    Starts a throwaway broker on free ports (or uses --bootstrap), runs every
    case on fresh topics with the same sample-like events, and prints a Markdown table of the
    median, min and max of each case's runs; progress goes to stderr. See docs/benchmarks.md.
    """
    from disruptfeed.bench._report import (
        build_document,
        environment,
        format_ratio,
        markdown_table,
    )
    from disruptfeed.bench._runner import FULL, QUICK, Bench
    from disruptfeed.broker import LocalBroker
    from disruptfeed.errors import BrokerError, DisruptFeedError

    json_file, plot_file = _outputs(curves, only, json_file, plot_file)
    settings = settings_from(ctx)
    plan = QUICK if quick else FULL
    if runs is not None:
        plan = dataclasses.replace(plan, runs=runs)
    selected = {spec.name for spec in CASES if not only or spec.name in only}
    with tempfile.TemporaryDirectory(prefix="disruptfeed-bench-") as tmp, _sigterm_unwinds():
        workdir = Path(tmp)
        try:
            users = not settings.embedded  # before _broker points the copy at its own broker
            with _broker(settings, workdir) as (settings, where):
                if users:
                    _may_touch(settings, yes)
                lib = LocalBroker(settings).resolve_jars(_say)
                env = environment(settings.kafka_version, where)
                runner = Bench(settings, plan, workdir, lib, _say)
                if plot_file is not None and json_file is not None:  # --curves
                    _curves(runner, "quick" if quick else "full", env, json_file, plot_file)
                    return
                _say(f"building the workloads ({plan.events:,} events) ...")
                workload = runner.workload()
                results = _run_with_bar(runner, selected, plan.runs)
        except BrokerError as exc:
            fail(str(exc), EXIT_BROKER)
        except DisruptFeedError as exc:
            fail(str(exc), EXIT_CONFIG)
    document = build_document(results, env, workload, "quick" if quick else "full")
    if json_file is not None:
        json_file.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    click.echo(markdown_table(document))
    worst = document["worst_ratio"]
    if worst:
        _say(f"worst ratio: {worst['case']} at {format_ratio(worst['ratio'])} {worst['peer']}")
    failed = [c["name"] for c in document["cases"] if "error" in c]
    if failed:
        fail(f"cases that could not be measured: {', '.join(failed)}", EXIT_REJECTED)


def _outputs(
    curves: bool, only: tuple[str, ...], json_file: Path | None, plot_file: Path | None
) -> tuple[Path | None, Path | None]:
    """The JSON and PNG paths (set in --curves mode), once the options and extras are checked."""
    if curves:
        if only:
            fail("--curves measures its own points; it takes no --case")
        json_file = json_file or Path("bench-curves.json")
        plot_file = plot_file or Path("bench-curves.png")
    elif plot_file is not None:
        fail("--plot draws the curves: use it with --curves")
    extras = (*_EXTRAS, _PLOT) if curves else _EXTRAS
    missing = [dist for module, dist in extras if importlib.util.find_spec(module) is None]
    if missing:
        fail(f"the benchmark needs {', '.join(missing)}: pip install -e '.[bench]'")
    for option, path in (("--json", json_file), ("--plot", plot_file)):
        if path is not None and not path.parent.is_dir():
            fail(f"{option} {path}: no such directory {path.parent}")  # before, not after
    return json_file, plot_file


def _curves(runner: Bench, size: str, env: dict[str, Any], json_file: Path, plot: Path) -> None:
    from disruptfeed.bench._curves import (
        CURVE_PLANS,
        Curves,
        curves_table,
        measure_curves,
        plot_curves,
    )

    _say("warming the broker up ...")
    runner.warm_up()
    plan = CURVE_PLANS[size]
    measured = measure_curves(Curves(runner.settings, plan, runner.workdir, runner.run_id, _say))
    document = {"mode": size, "environment": env, "plan": dataclasses.asdict(plan),
                "curves": measured}  # fmt: skip
    json_file.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    plot_curves(measured, plot)
    click.echo(curves_table(measured))
    _say(f"curves: {json_file}, plot: {plot}")
    failed = [name for name, curve in measured.items() if curve.get("error")]
    if failed:
        fail(f"curves that could not be measured: {', '.join(failed)}", EXIT_REJECTED)


def _may_touch(settings: Settings, yes: bool) -> None:
    """On a cluster of the user's: refuse beside bench-like topics not ours, else ask (or --yes).

    The bench deletes the topics it creates by their prefix; a topic already named like them
    could be someone's, so the bench does not run beside one.
    """
    from disruptfeed.bench._topics import others_topics

    theirs = asyncio.run(others_topics(settings))
    if theirs:
        shown = ", ".join(theirs[:5]) + (f" and {len(theirs) - 5} more" if len(theirs) > 5 else "")
        fail(
            f"{settings.bootstrap} already has {len(theirs)} topic(s) named like the bench's "
            f"own ({shown}); the bench deletes the topics it creates by name and will not run "
            "beside ones it did not create. Delete them if they are a bench's leftovers "
            "(kafka-topics.sh --delete --topic 'bench-.*'), or run against another cluster.",
            EXIT_CONFIG,
        )
    if yes:
        return
    question = f"The bench creates and deletes topics named bench-* on {settings.bootstrap}. Go on?"
    if not sys.stdin.isatty():
        fail(f"{question} No terminal to ask on: pass --yes to let it.", EXIT_CONFIG)
    if not click.confirm(question, default=False, err=True):
        fail("stopped: nothing was created.", EXIT_CONFIG)


@contextlib.contextmanager
def _broker(settings: Settings, workdir: Path) -> Iterator[tuple[Settings, str]]:
    """The configured cluster, or a throwaway broker in ``workdir`` for the ``with`` block.

    Yields:
        Settings pointing at the broker, and a description of it for the report.
    """
    from disruptfeed.broker import LocalBroker, free_port, wait_until_ready

    if not settings.embedded:
        # Fail now, with one clear message, rather than in the middle of the first case.
        wait_until_ready(settings.bootstrap, 15.0, client_kwargs=settings.client_kwargs())
        yield settings, f"external ({settings.bootstrap})"
        return

    broker = LocalBroker(
        settings.model_copy(update={"data_dir": workdir / "kafka"}),
        data_dir=workdir / "kafka" / "broker",
        port=free_port(),
        controller_port=free_port(),
    )
    _say("starting a throwaway Kafka broker ...")
    try:
        status = broker.start(progress=_say)
        ours = settings.model_copy(update={"bootstrap_servers": status.bootstrap_servers})
        yield ours, "embedded (throwaway)"
    finally:
        _say("stopping the throwaway broker ...")
        broker.stop()


def _run_with_bar(runner: Bench, selected: set[str], runs: int) -> list[CaseResult]:
    # The p99s and the webhook figures come with publish-to-alert-p50 (added to the selection
    # when any of them is asked for), and the replay case is never run.
    together = {"publish-to-alert-p99", "publish-to-webhook-p50", "publish-to-webhook-p99"}
    if selected & together:
        selected = selected | {"publish-to-alert-p50"}
    steps = len(selected - together - {"feed-replay-verify"}) * runs
    with progress(steps, "benchmarking", "case runs") as bar:
        return runner.run(selected, tick=bar.update)
