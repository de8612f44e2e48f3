"""``disruptfeed status``: the whole feed on one screen, gathered from the cluster and the worker.

Each section is gathered on its own, with its own deadline, and says what it could not reach
(``error``) instead of failing the rest: a stopped worker still leaves the broker, topics, lag
and dead letters to look at, and a stopped broker still leaves the worker's answer.

Sections (the keys of :func:`gather_status`'s document):

- ``broker``: reachable or not; cluster id, controller, brokers.
- ``topics``: each topic of the feed as the cluster has it (partitions, replication, cleanup
  policy, min ISR, under-replicated partitions) against what the settings ask; the differences
  ``topics create`` refuses are listed in ``problems``, as are missing topics.
- ``workers``: the worker group as the group coordinator describes it: state, and per member
  its client id and host, the URL it announced, and the source partitions assigned to it;
  ``api``: the answer of the worker's ``/health`` at the configured URL.
- ``lag``: per source partition, end offset minus the worker group's committed offset.
- ``alerts``: the alerts firing now, from the worker's ``/alerts``.
- ``dead_letters``: records on the dead-letter topic with timestamps in the last hour.
"""

from __future__ import annotations

__all__ = ["SECTIONS", "gather_status", "worker_group"]

import asyncio
import datetime as dt
import json
from collections.abc import Awaitable, Callable
from typing import Any, Final

from disruptfeed.settings import Settings
from disruptfeed.topics import (
    DEAD_LETTER,
    EVENT_TOPICS,
    spec_differences,
    topic_configs,
    topic_specs,
)

SECTIONS: Final = ("broker", "topics", "workers", "lag", "alerts", "dead_letters")

SECTION_TIMEOUT: Final = 15.0
"""Seconds one section may take before it reports a timeout instead."""

_BROKER_DOWN: Final = "skipped: the broker is not reachable"
_COORDINATOR_MOVING: Final = (14, 15, 16)


def worker_group(settings: Settings) -> str:
    """The worker's consumer group: Faust uses the app id (see streams.app.create_app)."""
    return f"{settings.topic_prefix}-worker"


async def gather_status(settings: Settings, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """Every section of the status document; see the module docstring."""
    now = now or dt.datetime.now(dt.UTC)
    doc: dict[str, Any] = {
        "bootstrap": settings.bootstrap,
        "topic_prefix": settings.topic_prefix,
        "worker_url": settings.worker_api_url,
        "at": now.isoformat(timespec="seconds"),
    }
    # Both halves bound every step by SECTION_TIMEOUT and report failures in their sections.
    api, cluster = await asyncio.gather(_worker_sections(settings), _kafka_sections(settings, now))
    doc.update(cluster)
    doc["alerts"] = api["alerts"]
    doc["workers"]["api"] = api["health"]
    return doc


# --- the worker's HTTP API -------------------------------------------------------------------


async def _worker_sections(settings: Settings) -> dict[str, Any]:
    import httpx

    tokens = settings.bearer_tokens(create=False)
    headers = {"Authorization": f"Bearer {tokens[0]}"} if tokens else {}
    base = settings.worker_api_url
    async with httpx.AsyncClient(timeout=SECTION_TIMEOUT / 3, headers=headers) as client:

        async def get(path: str) -> tuple[int | None, Any, str | None]:
            try:
                response = await client.get(base + path)
            except httpx.HTTPError as exc:
                return None, None, f"no worker answers at {base} ({type(exc).__name__}: {exc})"
            try:
                body = response.json()
            except ValueError:
                body = None
            if response.status_code == 401:
                return response.status_code, body, f"the worker at {base} refused the token"
            return response.status_code, body, None

        (h_code, h_body, h_err), (a_code, a_body, a_err) = await asyncio.gather(
            get("/health"), get("/alerts")
        )
    health: dict[str, Any] = {"ok": h_err is None and h_code is not None, "url": base}
    if h_err is not None:
        health["error"] = h_err
    elif isinstance(h_body, dict):
        health.update(
            status=h_body.get("status"),
            stream_time=h_body.get("stream_time"),
            processed=h_body.get("processed"),
            dead_lettered=h_body.get("dead_lettered"),
        )
    else:
        health.update(ok=False, error=f"the worker at {base} answered {h_code} without JSON")
    alerts: dict[str, Any] = {"ok": False}
    if a_err is not None:
        alerts["error"] = a_err
    elif a_code != 200 or not isinstance(a_body, dict):
        reason = a_body.get("error") if isinstance(a_body, dict) else None
        alerts["error"] = f"the worker at {base} answered {a_code}" + (
            f": {reason}" if reason else ""
        )
    else:
        firing = [a for a in a_body.get("alerts", []) if a.get("status", "firing") == "firing"]
        alerts.update(
            ok=True,
            firing=len(firing),
            stream_time=a_body.get("stream_time"),
            alerts=[
                {k: a.get(k) for k in ("rule", "region", "severity", "summary", "starts_at")}
                for a in firing
            ],
        )
    return {"health": health, "alerts": alerts}


# --- the cluster -----------------------------------------------------------------------------


async def _kafka_sections(settings: Settings, now: dt.datetime) -> dict[str, Any]:
    from aiokafka.admin import AIOKafkaAdminClient

    from consumers._kafka import start_consumer
    from disruptfeed._security import connect_failure

    down = {"ok": False, "error": _BROKER_DOWN}
    out: dict[str, Any] = {name: dict(down) for name in SECTIONS if name != "alerts"}
    admin = AIOKafkaAdminClient(**settings.client_kwargs())
    try:
        await asyncio.wait_for(admin.start(), SECTION_TIMEOUT)
    except Exception as exc:
        await admin.close()
        reason = exc if isinstance(exc, TimeoutError) else await _why(settings, connect_failure)
        out["broker"] = {"ok": False, "error": str(reason) or type(exc).__name__}
        return out
    consumer = None
    try:
        out["broker"] = await _step(_broker(admin))
        if not out["broker"]["ok"]:
            return out
        try:
            consumer = await asyncio.wait_for(start_consumer(settings), SECTION_TIMEOUT)
        except Exception as exc:
            consumer = None
            error = f"could not start a consumer: {exc}"
            out.update(
                lag={"ok": False, "error": error}, dead_letters={"ok": False, "error": error}
            )
        out["topics"] = await _step(_topics(admin, settings))
        out["workers"] = await _step(_workers(admin, settings))
        if consumer is not None:
            out["lag"] = await _step(_lag(admin, consumer, settings))
            out["dead_letters"] = await _step(_dead_letters(consumer, settings, now))
    finally:
        if consumer is not None:
            await consumer.stop()
        await admin.close()
    return out


async def _why(
    settings: Settings, diagnose: Callable[[Settings], Awaitable[Exception]]
) -> Exception:
    try:
        return await asyncio.wait_for(diagnose(settings), SECTION_TIMEOUT)
    except Exception as exc:
        return exc


async def _step(coro: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    """One section, or what went wrong with it."""
    try:
        return await asyncio.wait_for(coro, SECTION_TIMEOUT)
    except TimeoutError:
        return {"ok": False, "error": f"no answer in {SECTION_TIMEOUT:.0f}s"}
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


async def _broker(admin: Any) -> dict[str, Any]:
    described = await admin.describe_cluster()
    brokers = [
        {"node_id": b["node_id"], "host": b["host"], "port": b["port"], "rack": b.get("rack")}
        for b in described.get("brokers", [])
    ]
    return {
        "ok": True,
        "cluster_id": described.get("cluster_id"),
        "controller_id": described.get("controller_id"),
        "brokers": sorted(brokers, key=lambda b: b["node_id"]),
    }


async def _topics(admin: Any, settings: Settings) -> dict[str, Any]:
    specs = topic_specs(settings)
    existing = set(await admin.list_topics())
    present = [s.name for s in specs if s.name in existing]
    described = {t["topic"]: t for t in await admin.describe_topics(present)} if present else {}
    configs = await topic_configs(admin, present) if present else {}
    rows, problems = [], []
    for spec in specs:
        want = {
            "partitions": spec.partitions,
            "replication_factor": spec.replication_factor,
            "cleanup_policy": spec.config.get("cleanup.policy"),
            "min_insync_replicas": spec.config.get("min.insync.replicas"),
        }
        row: dict[str, Any] = {"name": spec.name, "exists": spec.name in existing, "want": want}
        if not row["exists"]:
            row["problems"] = [f"{spec.name}: missing; 'disruptfeed topics create' creates it"]
        else:
            parts = described.get(spec.name, {}).get("partitions", [])
            config = configs.get(spec.name, {})
            replicas = [len(p["replicas"]) for p in parts]
            under = sum(1 for p in parts if len(p["isr"]) < len(p["replicas"]))
            row.update(
                partitions=len(parts),
                replication_factor=min(replicas) if replicas else None,
                cleanup_policy=config.get("cleanup.policy"),
                min_insync_replicas=config.get("min.insync.replicas"),
                under_replicated=under,
            )
            row["problems"] = spec_differences(spec, len(parts), config)
            if under:
                row["problems"].append(f"{spec.name}: {under} partitions under-replicated")
        problems += row["problems"]
        rows.append(row)
    return {"ok": True, "topics": rows, "problems": problems}


def _member(member: dict[str, Any], sources: set[str]) -> dict[str, Any]:
    from aiokafka.coordinator.protocol import (
        ConsumerProtocolMemberAssignment,
        ConsumerProtocolMemberMetadata,
    )

    url = None
    try:  # Faust's ClientMetadata (JSON) in the subscription's user data: the announced URL
        metadata = ConsumerProtocolMemberMetadata.decode(member["member_metadata"])
        url = json.loads(metadata.user_data).get("url")
    except Exception:  # noqa: S110 - another client in the group: no URL to show
        pass
    partitions: dict[str, list[int]] = {}
    if member["member_assignment"]:
        assignment = ConsumerProtocolMemberAssignment.decode(member["member_assignment"])
        for topic, parts in assignment.assignment:
            if topic in sources:
                partitions[topic] = sorted(parts)
    return {
        "member_id": member["member_id"],
        "client_id": member["client_id"],
        "client_host": member["client_host"],
        "url": url,
        "partitions": dict(sorted(partitions.items())),
    }


async def _coordinator(admin: Any, group: str, wait_s: float = SECTION_TIMEOUT / 2) -> int:
    """The group's coordinator; asked again while the cluster is still setting one up.

    On a cluster where no group ever ran, the first lookup creates the offsets topic and
    answers 'not available' until its leaders are elected.
    """
    from aiokafka.errors import CoordinatorLoadInProgressError, CoordinatorNotAvailableError

    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        try:
            return int(await admin.find_coordinator(group))
        except (CoordinatorNotAvailableError, CoordinatorLoadInProgressError):
            if loop.time() >= deadline:
                raise
            await asyncio.sleep(0.2)  # a retry interval; the loop ends on an answer or the deadline


async def _workers(admin: Any, settings: Settings) -> dict[str, Any]:
    from aiokafka.errors import for_code

    group = worker_group(settings)
    sources = {settings.topic(t) for t in EVENT_TOPICS}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SECTION_TIMEOUT / 2
    while True:
        coordinator = await _coordinator(admin, group)
        responses = await admin.describe_consumer_groups([group], group_coordinator_id=coordinator)
        described = [g for r in responses for g in r.to_object()["groups"] if g["group"] == group]
        code = described[0]["error_code"] if described else -1
        # 14, 15, 16: the coordinator is loading, not there yet, or moved: ask again.
        if code not in _COORDINATOR_MOVING or loop.time() >= deadline:
            break
        await asyncio.sleep(0.2)  # a retry interval; the loop ends on an answer or the deadline
    if code:
        reason = for_code(code).__name__ if code > 0 else "no answer"
        return {"ok": False, "group": group, "error": f"describing {group} failed: {reason}"}
    info = described[0]
    members = [_member(m, sources) for m in info["members"]]
    return {
        "ok": True,
        "group": group,
        "state": info["state"],
        "members": sorted(members, key=lambda m: (m["client_host"], m["member_id"])),
    }


async def _source_partitions(consumer: Any, settings: Settings) -> list[Any]:
    from aiokafka import TopicPartition

    from consumers._kafka import partitions_of

    out = []
    for name in EVENT_TOPICS:
        topic = settings.topic(name)
        out += [
            TopicPartition(topic, p)
            for p in await partitions_of(consumer, topic, settings.bootstrap, 0)
        ]
    return out


async def _lag(admin: Any, consumer: Any, settings: Settings) -> dict[str, Any]:
    group = worker_group(settings)
    tps = await _source_partitions(consumer, settings)
    coordinator = await _coordinator(admin, group)
    committed = await admin.list_consumer_group_offsets(
        group, group_coordinator_id=coordinator, partitions=tps
    )
    ends = await consumer.end_offsets(tps)
    starts = await consumer.beginning_offsets(tps)
    rows = []
    for tp in sorted(tps, key=lambda t: (t.topic, t.partition)):
        meta = committed.get(tp)
        offset = meta.offset if meta is not None and meta.offset >= 0 else None
        lag = ends[tp] - (offset if offset is not None else starts[tp])
        rows.append(
            {
                "topic": tp.topic,
                "partition": tp.partition,
                "end": ends[tp],
                "committed": offset,
                "lag": max(lag, 0),
            }
        )
    return {"ok": True, "group": group, "total": sum(r["lag"] for r in rows), "partitions": rows}


async def _dead_letters(consumer: Any, settings: Settings, now: dt.datetime) -> dict[str, Any]:
    from aiokafka import TopicPartition

    from consumers._kafka import partitions_of

    topic = settings.topic(DEAD_LETTER)
    since = now - dt.timedelta(hours=1)
    tps = [
        TopicPartition(topic, p)
        for p in await partitions_of(consumer, topic, settings.bootstrap, 0)
    ]
    found = await consumer.offsets_for_times(dict.fromkeys(tps, int(since.timestamp() * 1000)))
    ends = await consumer.end_offsets(tps)
    # offsets_for_times: the first record at or after ``since``; none there, none in the hour.
    count = sum(ends[tp] - hit.offset for tp, hit in found.items() if hit is not None)
    return {
        "ok": True,
        "topic": topic,
        "since": since.isoformat(timespec="seconds"),
        "last_hour": count,
    }
