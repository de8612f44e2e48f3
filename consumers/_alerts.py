"""The ops alert stream: alerts as the worker publishes them, for people and pagers."""

from __future__ import annotations

__all__ = ["read_alerts"]

import logging
from collections.abc import AsyncIterator
from typing import Literal

from pydantic import ValidationError

from consumers._kafka import assign_at, partitions_of
from disruptfeed._aiokafka import start_consumer_client, stop_client
from disruptfeed._security import connect_failure
from disruptfeed.settings import Settings
from disruptfeed.topics import ALERTS
from schemas import Alert, decode_alert

log = logging.getLogger(__name__)


async def read_alerts(
    settings: Settings,
    *,
    start: Literal["earliest", "latest"] = "latest",
    until_end: bool = False,
) -> AsyncIterator[Alert]:
    """Yield alerts from the alerts topic, in each partition's order.

    Args:
        settings: where the alerts topic is.
        start: read the history (``earliest``) or only new alerts (``latest``).
        until_end: stop at the end of what is there now instead of following.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.errors import KafkaConnectionError

    consumer = AIOKafkaConsumer(**settings.client_kwargs(), enable_auto_commit=False)
    try:
        await start_consumer_client(consumer)
    except KafkaConnectionError as exc:
        await stop_client(consumer)
        raise await connect_failure(settings) from exc
    try:
        topic = settings.topic(ALERTS)
        # The cluster's partitions, not the settings': a topic made with another count
        # would otherwise be read in part, silently.
        parts = [
            TopicPartition(topic, p)
            for p in await partitions_of(consumer, topic, settings.bootstrap)
        ]
        await assign_at(consumer, parts, "beginning" if start == "earliest" else "end")
        end = await consumer.end_offsets(parts) if until_end else {}
        while True:
            if until_end and all([await consumer.position(tp) >= end[tp] for tp in parts]):
                return
            for records in (await consumer.getmany(timeout_ms=1_000)).values():
                for record in records:
                    try:
                        yield decode_alert(record.value or b"")
                    except ValidationError as exc:
                        log.warning("skipping invalid alert at offset %d: %s", record.offset, exc)
    finally:
        await stop_client(consumer)
