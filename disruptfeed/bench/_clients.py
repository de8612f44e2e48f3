"""Client cases: Kafka's own perf tools, raw aiokafka, raw confluent-kafka, and FeedProducer.

Every producer uses the project's producer settings (``FeedProducer.client_config``: idempotent,
``acks=all``, the configured compression, linger and batch size) and sends the same records:
the value, key and CloudEvents headers that FeedProducer would send for the same events. Every
consumer reads the same backlog (the account-disrupted topic, from the beginning) by assigning
partitions directly, so no group rebalance is timed, as ConsumerPerformance excludes its own;
the Python clients' clocks start once they are connected and have the cluster's metadata.
"""

from __future__ import annotations

__all__ = [
    "aiokafka_consume",
    "aiokafka_produce",
    "confluent_consume",
    "confluent_produce",
    "feed_produce",
    "kafka_consume",
    "kafka_produce",
    "log_dir_bytes",
    "rdkafka_config",
]

import asyncio
import csv
import json
import re
import subprocess
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from disruptfeed._aiokafka import start_consumer_client
from disruptfeed._security import java_properties_text, java_security
from disruptfeed.bench._errors import BenchError
from disruptfeed.bench._events import Record
from disruptfeed.errors import BrokerError
from disruptfeed.settings import Settings
from producers import FeedProducer
from schemas import AccountDisrupted, EventBase

ACCOUNT_TOPIC = AccountDisrupted.topic_name
_TOOL_TIMEOUT_S = 600.0
_RESULT = re.compile(r"(\d+) records sent, ([\d.]+) records/sec")


def rdkafka_config(settings: Settings) -> dict[str, Any]:
    """Connection settings for librdkafka (confluent-kafka, Quix Streams) from ours."""
    return settings.rdkafka_config()


def _properties_file(settings: Settings, workdir: Path, name: str) -> Path:
    path = workdir / name
    # The file may hold a password: readable by this user only.
    path.touch(mode=0o600)
    path.write_text(java_properties_text(java_security(settings)), encoding="utf-8")
    return path


def _run_tool(lib: Path, tool: str, args: list[str]) -> str:
    cmd = ["java", "-cp", f"{lib}/*", f"org.apache.kafka.tools.{tool}", *args]
    try:
        done = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_TOOL_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{tool} did not finish within {_TOOL_TIMEOUT_S:.0f} s") from exc
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
        raise BenchError(f"{tool} failed (exit {done.returncode}):\n{tail}")
    return done.stdout


def log_dir_bytes(
    lib: Path, settings: Settings, topics: Sequence[str], workdir: Path
) -> dict[str, int]:
    """Bytes each topic holds on the brokers' disks, all partitions and replicas.

    From Kafka's LogDirsCommand: what the records cost at rest, compression included.
    """
    config = _properties_file(settings, workdir, "admin.properties")
    out = _run_tool(
        lib,
        "LogDirsCommand",
        [
            "--bootstrap-server", settings.bootstrap,
            "--command-config", str(config),
            "--describe", "--topic-list", ",".join(topics),
        ],
    )  # fmt: skip
    document = next((line for line in out.splitlines() if line.startswith("{")), None)
    if document is None:
        raise BenchError(f"no JSON in LogDirsCommand output:\n{out[-2000:]}")
    sizes = dict.fromkeys(topics, 0)
    for broker in json.loads(document)["brokers"]:
        for log_dir in broker["logDirs"]:
            for partition in log_dir["partitions"]:
                topic = partition["partition"].rsplit("-", 1)[0]
                if topic in sizes:
                    sizes[topic] += int(partition["size"])
    return sizes


def kafka_produce(lib: Path, settings: Settings, records: Sequence[Record], workdir: Path) -> float:
    """ProducerPerformance: the records' values as its payloads (picked at random), one topic.

    Returns:
        Records per second, as the tool reports it.
    """
    payloads = workdir / "payloads.txt"
    # orjson never writes a raw newline, so one JSON document per line is one payload.
    payloads.write_bytes(b"\n".join(r.value for r in records) + b"\n")
    props = [
        f"bootstrap.servers={settings.bootstrap}",
        f"client.id={settings.client_id}",
        "acks=all",
        "enable.idempotence=true",
        f"compression.type={settings.compression_type or 'none'}",
        f"linger.ms={settings.linger_ms}",
        f"batch.size={settings.max_batch_size}",
    ]
    config = _properties_file(settings, workdir, "producer.properties")
    out = _run_tool(
        lib,
        "ProducerPerformance",
        [
            "--topic", settings.topic(ACCOUNT_TOPIC),
            "--num-records", str(len(records)),
            "--throughput", "-1",
            "--payload-file", str(payloads),
            "--producer.config", str(config),
            "--producer-props", *props,
        ],
    )  # fmt: skip
    matches = _RESULT.findall(out)
    if not matches:
        raise BenchError(f"no summary line in ProducerPerformance output:\n{out[-2000:]}")
    sent, rate = matches[-1]  # the last line is the total; earlier ones are progress
    if int(sent) != len(records):
        raise BenchError(f"ProducerPerformance sent {sent} records, not {len(records)}")
    return float(rate)


def kafka_consume(lib: Path, settings: Settings, count: int, workdir: Path) -> float:
    """ConsumerPerformance over the account topic; its ``fetch.nMsg.sec`` (rebalance excluded).

    Returns:
        Records per second.
    """
    config = _properties_file(settings, workdir, "consumer.properties")
    out = _run_tool(
        lib,
        "ConsumerPerformance",
        [
            "--bootstrap-server", settings.bootstrap,
            "--topic", settings.topic(ACCOUNT_TOPIC),
            "--messages", str(count),
            "--group", f"{settings.topic_prefix}-kafka-{uuid.uuid4().hex[:8]}",
            "--timeout", "60000",
            "--consumer.config", str(config),
        ],
    )  # fmt: skip
    rows = [row for row in csv.reader(out.splitlines()) if row]
    header = next((i for i, row in enumerate(rows) if "fetch.nMsg.sec" in row[-1]), None)
    if header is None or header + 1 >= len(rows):
        raise BenchError(f"no result table in ConsumerPerformance output:\n{out[-2000:]}")
    names = [name.strip() for name in rows[header]]
    values = dict(zip(names, (v.strip() for v in rows[header + 1]), strict=False))
    if int(values["data.consumed.in.nMsg"]) < count:
        raise BenchError(f"ConsumerPerformance read {values['data.consumed.in.nMsg']} of {count}")
    return float(values["fetch.nMsg.sec"])


async def aiokafka_produce(settings: Settings, records: Sequence[Record]) -> float:
    """Raw AIOKafkaProducer with FeedProducer's configuration, sending pre-encoded records."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(**FeedProducer(settings).client_config())
    await producer.start()
    try:
        topics = {name: settings.topic(name) for name in {r.topic for r in records}}
        started = time.perf_counter()
        futures = []
        for r in records:
            futures.append(
                await producer.send(topics[r.topic], r.value, key=r.key, headers=r.headers)
            )
        await asyncio.gather(*futures)  # raises the first failure
        elapsed = time.perf_counter() - started
    finally:
        await producer.stop()
    return len(records) / elapsed


async def feed_produce(settings: Settings, events: Sequence[EventBase]) -> float:
    """FeedProducer.publish_many of typed events (built and validated before the clock starts)."""
    async with FeedProducer(settings) as producer:
        started = time.perf_counter()
        outcomes = await producer.publish_many(events)
        elapsed = time.perf_counter() - started
    failed = [o for o in outcomes if not o.ok]
    if failed:
        raise BenchError(f"{len(failed)} events were not published: {failed[0].error}")
    return len(events) / elapsed


def confluent_produce(settings: Settings, records: Sequence[Record]) -> float:
    """Raw confluent-kafka Producer with the same settings, sending pre-encoded records."""
    from confluent_kafka import KafkaException, Producer

    producer = Producer(
        {
            **rdkafka_config(settings),
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": settings.compression_type or "none",
            "linger.ms": settings.linger_ms,
            "batch.size": settings.max_batch_size,
        }
    )
    errors: list[Any] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(err)

    topics = {name: settings.topic(name) for name in {r.topic for r in records}}
    # Connected, with metadata, before the clock starts, as aiokafka is after start().
    producer.list_topics(timeout=30)
    started = time.perf_counter()
    for index, r in enumerate(records):
        while True:
            try:
                producer.produce(
                    topics[r.topic], r.value, r.key, headers=r.headers, on_delivery=delivered
                )
                break
            except BufferError:  # the local queue is full: serve delivery reports, then retry
                producer.poll(0.05)
        if index % 1_000 == 0:
            producer.poll(0)
    try:
        left = producer.flush(_TOOL_TIMEOUT_S)
    except KafkaException as exc:
        raise BrokerError(f"confluent-kafka flush failed: {exc}") from exc
    elapsed = time.perf_counter() - started
    if left or errors:
        raise BenchError(f"confluent-kafka: {left} records undelivered, errors: {errors[:3]}")
    return len(records) / elapsed


async def aiokafka_consume(settings: Settings, count: int, deadline_s: float = 300.0) -> float:
    """Raw AIOKafkaConsumer reading ``count`` records of the account topic from the start."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        **settings.client_kwargs(), enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await start_consumer_client(consumer)
    try:
        topic = settings.topic(ACCOUNT_TOPIC)
        parts = [TopicPartition(topic, p) for p in range(settings.partitions)]
        started = time.perf_counter()
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        received = 0
        while received < count:
            if time.perf_counter() - started > deadline_s:
                raise BenchError(f"aiokafka read {received} of {count} in {deadline_s:g} s")
            batches = await consumer.getmany(timeout_ms=1_000)
            received += sum(len(batch) for batch in batches.values())
        elapsed = time.perf_counter() - started
    finally:
        await consumer.stop()
    return count / elapsed


def confluent_consume(settings: Settings, count: int, deadline_s: float = 300.0) -> float:
    """Raw confluent-kafka Consumer reading ``count`` records of the account topic."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {
            **rdkafka_config(settings),
            # Required by the client even though partitions are assigned, never subscribed.
            "group.id": f"{settings.topic_prefix}-confluent",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        topic = settings.topic(ACCOUNT_TOPIC)
        # Connected, with metadata, before the clock starts, as aiokafka is after start().
        consumer.list_topics(topic, timeout=30)
        started = time.perf_counter()
        consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(settings.partitions)]
        )
        received = 0
        while received < count:
            if time.perf_counter() - started > deadline_s:
                raise BenchError(f"confluent-kafka read {received} of {count} in {deadline_s:g} s")
            # Never ask for more than is left: consume() would wait out its timeout for them.
            wanted = min(10_000, count - received)
            for message in consumer.consume(num_messages=wanted, timeout=1.0):
                if message.error() is not None:
                    raise BenchError(f"confluent-kafka consumer: {message.error()}")
                received += 1
        elapsed = time.perf_counter() - started
    finally:
        consumer.close()
    return count / elapsed
