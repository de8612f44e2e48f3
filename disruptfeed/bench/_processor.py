"""The feed-processor case: the worker's per-record logic alone, in this process.

The pipelines' backlog goes straight through :class:`streams.Processor` (decode, validate, dedupe,
count, evaluate the shipped rules), with no Kafka, no Faust and no table. It is the most the
worker's own code allows, so ``feed-pipeline`` is read between two bounds: this, and
``faust-floor`` (Faust with no work at all).
"""

from __future__ import annotations

__all__ = ["processor_rate"]

import time
import zlib
from collections.abc import Sequence
from typing import Any

from disruptfeed.bench._errors import BenchError
from disruptfeed.bench._events import Record
from disruptfeed.settings import Settings
from disruptfeed.topics import event_types_by_topic
from streams._processor import Processor


def processor_rate(settings: Settings, records: Sequence[Record]) -> tuple[float, dict[str, Any]]:
    """Process ``records`` once with a fresh Processor; events per second.

    Each record's partition is a CRC-32 of its key modulo the partition count (not Kafka's
    murmur2: only the per-partition stream time depends on it, and any fixed spread will do).
    """
    topic_types = event_types_by_topic(settings)
    processor = Processor.for_settings(settings)  # what the worker runs, dedupe horizon too
    processor.topic_types = topic_types
    inputs = [
        (
            settings.topic(r.topic),
            zlib.crc32(r.key) % settings.partitions,
            i,
            r.key,
            r.value,
            r.headers,
        )
        for i, r in enumerate(records)
    ]
    started = time.perf_counter()
    for topic, partition, offset, key, value, headers in inputs:
        processor.process(topic, partition, offset, key, value, headers)
    elapsed = time.perf_counter() - started
    stats = processor.stats
    if stats.counted != len(records) or stats.dead_lettered:
        raise BenchError(
            f"the processor counted {stats.counted} of {len(records)} events "
            f"({stats.dead_lettered} dead-lettered)"
        )
    return len(records) / elapsed, {"events": len(records), "alerts": stats.alerts_sent}
