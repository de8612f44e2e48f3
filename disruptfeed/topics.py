"""The project's topics, their configuration, and idempotent creation.

One topic per event type keeps each consumer's schema single and lets retention differ by kind;
event history topics keep everything, because replay for audits must reach any time range.
"""

from __future__ import annotations

__all__ = [
    "ALERTS",
    "CHECKPOINTS",
    "DEAD_LETTER",
    "DELIVERIES",
    "DELIVERY_DEAD_LETTER",
    "DISPATCH_STATE",
    "EVENT_TOPICS",
    "SUBSCRIPTIONS",
    "TopicSpec",
    "cluster_id",
    "create_topics",
    "event_types_by_topic",
    "spec_differences",
    "topic_configs",
    "topic_for",
    "topic_specs",
]

from dataclasses import dataclass, field
from typing import Any, Final

from disruptfeed._aiokafka import start_admin_client
from disruptfeed._security import connect_failure
from disruptfeed.errors import BrokerError, TopicMismatchError
from disruptfeed.settings import Settings
from schemas import EVENT_TYPES, EventBase

DEAD_LETTER: Final = "dead-letter"
CHECKPOINTS: Final = "checkpoints"
ALERTS: Final = "alerts"
SUBSCRIPTIONS: Final = "subscriptions"
DISPATCH_STATE: Final = "dispatch-state"
DELIVERIES: Final = "deliveries"
DELIVERY_DEAD_LETTER: Final = "delivery-dead-letter"
EVENT_TOPICS: Final = tuple(cls.topic_name for cls in EVENT_TYPES)

_KEEP_FOREVER: Final = {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete"}


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic to create: its full name, partition count and configuration."""

    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)


def topic_for(settings: Settings, event: EventBase | type[EventBase]) -> str:
    """The full topic name an event (or event class) is published to."""
    return settings.topic(event.topic_name)


def event_types_by_topic(settings: Settings) -> dict[str, str]:
    """Full event topic name -> the event ``type`` that belongs on it."""
    return {topic_for(settings, cls): cls.model_fields["type"].default for cls in EVENT_TYPES}


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic the project needs, with explicit configuration."""
    rf = settings.replication_factor
    # Duplicate appends from producer retries are prevented by idempotence; a topic also
    # rejects records larger than an event can be (64 KiB) with a margin for headers. With
    # three or more replicas an acknowledged write is on two of them (acks=all), so one broker
    # can die without losing it and the topic still takes writes.
    common = {
        "max.message.bytes": str(1024 * 1024),
        "message.timestamp.type": "CreateTime",
        "min.insync.replicas": "2" if rf >= 3 else "1",
    }
    specs = [
        TopicSpec(settings.topic(name), settings.partitions, rf, {**common, **_KEEP_FOREVER})
        for name in EVENT_TOPICS
    ]
    specs.append(
        TopicSpec(settings.topic(DEAD_LETTER), settings.partitions, rf, {**common, **_KEEP_FOREVER})
    )
    # Alerts keyed by fingerprint: compaction would drop firing/resolved history, so keep a year.
    specs.append(
        TopicSpec(
            settings.topic(ALERTS),
            settings.partitions,
            rf,
            {**common, "retention.ms": str(365 * 24 * 3600 * 1000), "cleanup.policy": "delete"},
        )
    )
    # Latest value per key is the state (tombstones delete); one partition keeps the whole
    # history of changes in one order, and a reader loads it all at start.
    compacted = {
        **common,
        "cleanup.policy": "compact",
        "min.compaction.lag.ms": "60000",
        "delete.retention.ms": str(24 * 3600 * 1000),
    }
    specs.append(TopicSpec(settings.topic(SUBSCRIPTIONS), 1, rf, compacted))
    # Signed checkpoints form a chain: one partition keeps their order, and they are kept forever.
    specs.append(TopicSpec(settings.topic(CHECKPOINTS), 1, rf, {**common, **_KEEP_FOREVER}))
    specs.append(TopicSpec(settings.topic(DISPATCH_STATE), 1, rf, compacted))
    # Every delivery attempt, keyed by subscription: 30 days is enough to debug an endpoint.
    specs.append(
        TopicSpec(
            settings.topic(DELIVERIES),
            settings.partitions,
            rf,
            {**common, "retention.ms": str(30 * 24 * 3600 * 1000), "cleanup.policy": "delete"},
        )
    )
    specs.append(
        TopicSpec(
            settings.topic(DELIVERY_DEAD_LETTER),
            settings.partitions,
            rf,
            {**common, **_KEEP_FOREVER},
        )
    )
    return specs


CHECKED: Final = ("cleanup.policy", "min.insync.replicas")
"""The settings of an existing topic that must be ours: how it keeps data, and how safely."""


async def create_topics(settings: Settings, specs: list[TopicSpec] | None = None) -> dict[str, str]:
    """Create the topics that do not exist yet; check those that do.

    Returns:
        A map of topic name to ``"created"`` or ``"exists"``.

    Raises:
        BrokerNotRunningError: nothing answers at the bootstrap address.
        ConnectionSecurityError: it answers, but not to the TLS/SASL settings.
        BrokerError: the broker refused to create a topic.
        TopicMismatchError: an existing topic has other partitions, cleanup policy or
            ``min.insync.replicas`` than the settings ask for; the message lists each.
    """
    from aiokafka.admin import NewTopic
    from aiokafka.errors import KafkaError

    specs = topic_specs(settings) if specs is None else specs
    admin = await _admin(settings)
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        present = [s for s in specs if s.name in existing]
        if present:
            differences = await _differences(admin, present)
            if differences:
                raise TopicMismatchError(differences)
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=s.config)
                    for s in missing
                ]
            )
            for name, code, message in _topic_errors(response):
                # 36 = TOPIC_ALREADY_EXISTS: another process won the race; that is fine.
                if code not in (0, 36):
                    raise BrokerError(f"could not create topic {name}: error {code} {message}")
        return {s.name: ("created" if s in missing else "exists") for s in specs}
    except KafkaError as exc:
        raise BrokerError(f"creating topics failed: {exc}") from exc
    finally:
        await admin.close()


async def _differences(admin: Any, specs: list[TopicSpec]) -> list[str]:
    """How each existing topic differs from its spec, one line per difference."""
    described = {t["topic"]: t for t in await admin.describe_topics([s.name for s in specs])}
    configs = await topic_configs(admin, [s.name for s in specs])
    out = []
    for spec in specs:
        have = described.get(spec.name)
        partitions = len(have["partitions"]) if have is not None else None
        out += spec_differences(spec, partitions, configs.get(spec.name, {}))
    return out


def spec_differences(spec: TopicSpec, partitions: int | None, config: dict[str, str]) -> list[str]:
    """How an existing topic (its partition count and configuration) differs from its spec.

    What ``topics create`` refuses, one line each: other partitions, or another value of a
    :data:`CHECKED` setting.
    """
    out = []
    if partitions is not None and partitions != spec.partitions:
        out.append(f"{spec.name}: {partitions} partitions, settings want {spec.partitions}")
    for name in CHECKED:
        want, got = spec.config.get(name), config.get(name)
        if want is not None and got is not None and want != got:
            out.append(f"{spec.name}: {name}={got}, settings want {want}")
    return out


async def topic_configs(admin: Any, names: list[str]) -> dict[str, dict[str, str]]:
    """Topic name -> its configuration as the cluster has it (every entry)."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    configs: dict[str, dict[str, str]] = {}
    for response in await admin.describe_configs(resources):
        for resource in response.to_object()["resources"]:
            configs[resource["resource_name"]] = {
                entry["config_names"]: entry["config_value"] for entry in resource["config_entries"]
            }
    return configs


async def cluster_id(settings: Settings) -> str:
    """The Kafka cluster id of the broker at ``settings.bootstrap``.

    Raises:
        BrokerNotRunningError: nothing answers at the bootstrap address.
        ConnectionSecurityError: it answers, but not to the TLS/SASL settings.
    """
    admin = await _admin(settings)
    try:
        return str((await admin.describe_cluster())["cluster_id"])
    finally:
        await admin.close()


async def _admin(settings: Settings) -> Any:
    """A started admin client (BrokerNotRunningError when nothing answers)."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaConnectionError

    admin = AIOKafkaAdminClient(**settings.client_kwargs())
    try:
        await start_admin_client(admin)  # closes it again on failure
    except KafkaConnectionError as exc:
        raise await connect_failure(settings) from exc
    return admin


def _topic_errors(response: object) -> list[tuple[str, int, str]]:
    rows = getattr(response, "topic_errors", [])
    result = []
    for row in rows:
        name, code = row[0], row[1]
        message = row[2] if len(row) > 2 else ""
        result.append((str(name), int(code), str(message or "")))
    return result
