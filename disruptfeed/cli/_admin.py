"""Subcommands that manage infrastructure: broker, topics, schemas."""

from __future__ import annotations

__all__ = ["broker", "schemas_group", "topics"]

from pathlib import Path

import click

from disruptfeed.cli._common import (
    EXIT_BROKER,
    bootstrap_option,
    emit,
    fail,
    output_option,
    run,
    settings_from,
)
from disruptfeed.errors import DisruptFeedError
from disruptfeed.settings import Settings


@click.group()
def broker() -> None:
    """Run the embedded single-node Kafka broker (KRaft, from Maven Central jars).

    Needs Java 17+ and Maven; jars are cached under DISRUPTFEED_CACHE_DIR and broker state lives
    under DISRUPTFEED_DATA_DIR. Not used when DISRUPTFEED_BOOTSTRAP_SERVERS is set.
    """


def _local(settings: Settings) -> object:
    from disruptfeed.broker import LocalBroker

    if not settings.embedded:
        fail(
            f"DISRUPTFEED_BOOTSTRAP_SERVERS is set ({settings.bootstrap}): the embedded broker is "
            "not used. Unset it to manage the local broker."
        )
    return LocalBroker(settings)


def start_broker(settings: Settings) -> None:
    """Start the embedded broker (idempotent) and create the topics; used by start and demo."""
    from disruptfeed.broker import LocalBroker
    from disruptfeed.topics import create_topics

    if settings.embedded:
        local = LocalBroker(settings)
        try:
            local.resolve_jars(progress=lambda msg: click.echo(msg, err=True))
            status = local.start()
        except DisruptFeedError as exc:
            fail(str(exc))
        click.echo(f"broker running at {status.bootstrap_servers} (pid {status.pid})", err=True)
    created = run(create_topics(settings))
    for name, state in created.items():
        click.echo(f"topic {name}: {state}", err=True)


@broker.command("start")
@click.option(
    "--nodes",
    type=click.IntRange(1, 9),
    default=1,
    show_default=True,
    help="Nodes in the cluster. 3 or more: a KRaft cluster on free local ports under "
    "<data dir>/cluster, topics with replication factor 3 and min.insync.replicas=2.",
)
@click.option(
    "--secure",
    is_flag=True,
    help="A second, secured broker under <data dir>/secure-broker, on free local ports: one "
    "SASL_SSL listener (a throwaway CA, SCRAM users with random passwords), authorization on. "
    "Prints the DISRUPTFEED_* lines its clients need (the password included).",
)
@click.pass_context
def broker_start(ctx: click.Context, nodes: int, secure: bool) -> None:
    """Start the broker if it is not running, wait until it answers, create topics."""
    settings = settings_from(ctx)
    if secure:
        if nodes != 1:
            fail("--secure starts a single node; it cannot be combined with --nodes")
        start_secure_broker(settings)
        return
    if nodes == 1:
        start_broker(settings)
        return
    start_cluster(settings, nodes)


def start_secure_broker(settings: Settings) -> None:
    """Start the secure broker (idempotent), create the topics as its feed user, print its env."""
    from disruptfeed.broker import secure_broker
    from disruptfeed.topics import create_topics

    _local(settings)  # refuses when DISRUPTFEED_BOOTSTRAP_SERVERS names another cluster
    local = secure_broker(settings)
    try:
        status = local.start(progress=lambda msg: click.echo(msg, err=True))
    except DisruptFeedError as exc:
        fail(str(exc))
    click.echo(
        f"secure broker running at {status.bootstrap_servers} (SASL_SSL; pid {status.pid}; "
        f"state in {status.data_dir})",
        err=True,
    )
    for name, state in run(create_topics(local.client_settings())).items():
        click.echo(f"topic {name}: {state}", err=True)
    click.echo("# use the secure broker in this shell with (the password is a secret):", err=True)
    for name, value in local.client_env().items():
        click.echo(f"export {name}={value}")


def start_cluster(settings: Settings, nodes: int) -> None:
    """Start a local cluster of ``nodes`` and create the topics, replicated; print its env."""
    from disruptfeed._cluster import LocalCluster
    from disruptfeed.topics import create_topics

    _local(settings)  # refuses when DISRUPTFEED_BOOTSTRAP_SERVERS names another cluster
    cluster = LocalCluster(settings, nodes)
    try:
        for status in cluster.start(progress=lambda msg: click.echo(msg, err=True)):
            click.echo(f"node at {status.bootstrap_servers} (pid {status.pid})", err=True)
    except (DisruptFeedError, ValueError) as exc:
        fail(str(exc))
    replicated = settings.model_copy(
        update={"bootstrap_servers": cluster.bootstrap_servers, "replication_factor": min(nodes, 3)}
    )
    for name, state in run(create_topics(replicated)).items():
        click.echo(f"topic {name}: {state}", err=True)
    click.echo("# use the cluster in this shell with:", err=True)
    click.echo(f"export DISRUPTFEED_BOOTSTRAP_SERVERS={cluster.bootstrap_servers}")
    click.echo(f"export DISRUPTFEED_REPLICATION_FACTOR={min(nodes, 3)}")


@broker.command("stop")
@click.pass_context
def broker_stop(ctx: click.Context) -> None:
    """Stop the broker (and a local cluster or secure broker, if one was started) cleanly."""
    from disruptfeed.broker import LocalBroker, has_secure_broker, secure_broker

    settings = settings_from(ctx)
    local = _local(settings)
    assert isinstance(local, LocalBroker)
    click.echo("broker stopped" if local.stop() else "broker was not running", err=True)
    layout = settings.data_dir / "cluster" / "cluster.json"
    if layout.is_file():
        import json

        from disruptfeed._cluster import LocalCluster

        nodes = len(json.loads(layout.read_text(encoding="utf-8"))["ports"])
        stopped = LocalCluster(settings, nodes).stop()
        click.echo(f"{nodes}-node cluster " + ("stopped" if stopped else "was not running"),
                   err=True)  # fmt: skip
    if has_secure_broker(settings):
        stopped = secure_broker(settings).stop()
        click.echo("secure broker " + ("stopped" if stopped else "was not running"), err=True)


@broker.command("status")
@click.pass_context
def broker_status(ctx: click.Context) -> None:
    """Say whether the broker runs and answers. Exits 3 if it does not (the plaintext one)."""
    from disruptfeed.broker import LocalBroker, has_secure_broker, secure_broker

    local = _local(settings_from(ctx))
    assert isinstance(local, LocalBroker)
    status = local.status()
    state = "running" if status.running else "stopped"
    if status.running and not status.answering:
        state = "running but not answering"
    click.echo(
        f"{state}: {status.bootstrap_servers} pid={status.pid} kafka={status.version} "
        f"data={status.data_dir}"
    )
    if has_secure_broker(local.settings):
        secure = secure_broker(local.settings).status()
        click.echo(
            f"secure broker {'running' if secure.running else 'stopped'}: "
            f"{secure.bootstrap_servers} (SASL_SSL) pid={secure.pid} "
            f"answering={'yes' if secure.answering else 'no'} data={secure.data_dir}"
        )
    if not (status.running and status.answering):
        raise SystemExit(EXIT_BROKER)


@click.group()
def topics() -> None:
    """Manage the project's topics."""


@topics.command("create")
@bootstrap_option
@click.pass_context
def topics_create(ctx: click.Context) -> None:
    """Create every topic that does not exist yet (event topics keep everything)."""
    from disruptfeed.topics import create_topics

    created = run(create_topics(settings_from(ctx)))
    for name, state in created.items():
        click.echo(f"{name}: {state}")


@topics.command("list")
@bootstrap_option
@output_option(json_alias=None)
@click.pass_context
def topics_list(ctx: click.Context, output: str) -> None:
    """Show the topics the project uses and the configuration the settings give them.

    'disruptfeed status' shows them as the cluster has them.
    """
    from disruptfeed.topics import topic_specs

    specs = topic_specs(settings_from(ctx))
    rows = [
        {
            "name": s.name,
            "partitions": s.partitions,
            "replication_factor": s.replication_factor,
            "config": s.config,
        }
        for s in specs
    ]

    def table() -> str:
        lines = []
        for spec in specs:
            conf = " ".join(f"{k}={v}" for k, v in sorted(spec.config.items()))
            lines.append(
                f"{spec.name}  partitions={spec.partitions} rf={spec.replication_factor}  {conf}"
            )
        return "\n".join(lines)

    emit(output, rows, rows, table)


@click.group("schemas")
def schemas_group() -> None:
    """Export the event schemas for other languages and tools."""


@schemas_group.command("export")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.pass_context
def schemas_export(ctx: click.Context, directory: Path) -> None:
    """Write one JSON Schema per event type and an AsyncAPI 3.0 document into DIRECTORY."""
    from schemas import export

    for path in export(directory, settings_from(ctx)):
        click.echo(str(path))
