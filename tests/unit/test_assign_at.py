"""Partitions are positioned as they are assigned (consumers._kafka.assign_at).

A partition assigned without a position is reset by aiokafka's background fetcher, which on a
topic made a moment ago logged NotLeaderForPartition and left a connection open past stop() (CI,
test_api and test_http_security). So every offset is looked up first, and nothing is awaited
between the assignment and the last seek.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka import TopicPartition

from consumers._kafka import assign_at

pytestmark = pytest.mark.unit


class _Consumer:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def beginning_offsets(self, parts: list[TopicPartition]) -> dict[TopicPartition, int]:
        self.calls.append(("beginning", sorted(tp.partition for tp in parts)))
        return {tp: 10 + tp.partition for tp in parts}

    async def end_offsets(self, parts: list[TopicPartition]) -> dict[TopicPartition, int]:
        self.calls.append(("end", sorted(tp.partition for tp in parts)))
        return {tp: 100 + tp.partition for tp in parts}

    def assign(self, parts: list[TopicPartition]) -> None:
        self.calls.append(("assign", sorted(tp.partition for tp in parts)))

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.calls.append(("seek", tp.partition, offset))


PARTS = [TopicPartition("t", p) for p in range(3)]


async def test_offsets_are_looked_up_before_the_assignment_and_set_with_it() -> None:
    consumer = _Consumer()
    await assign_at(consumer, PARTS)
    assert consumer.calls == [
        ("beginning", [0, 1, 2]),
        ("assign", [0, 1, 2]),
        ("seek", 0, 10),
        ("seek", 1, 11),
        ("seek", 2, 12),
    ]


async def test_given_starts_are_kept_and_only_the_rest_looked_up() -> None:
    consumer = _Consumer()
    await assign_at(consumer, PARTS, "end", start={1: 7})
    assert consumer.calls == [
        ("end", [0, 2]),
        ("assign", [0, 1, 2]),
        ("seek", 0, 100),
        ("seek", 1, 7),
        ("seek", 2, 102),
    ]
    every = _Consumer()
    await assign_at(every, PARTS, start={0: 1, 1: 2, 2: 3})
    assert [c[0] for c in every.calls] == ["assign", "seek", "seek", "seek"]
