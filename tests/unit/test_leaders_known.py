"""read_to_end waits for a fresh topic's leaders before it looks offsets up (consumers._kafka)."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka import TopicPartition

from consumers._kafka import leaders_known

pytestmark = pytest.mark.unit


class _Metadata:
    def __init__(self, leaders: dict[int, int]) -> None:
        self.leaders = leaders

    def leader_for_partition(self, tp: TopicPartition) -> int | None:
        return self.leaders.get(tp.partition)


class _Client:
    """Answers metadata requests from a script: no leader at first, then one."""

    def __init__(self, answers: list[dict[int, int]]) -> None:
        self.answers = answers
        self.asked = 0

    async def fetch_all_metadata(self) -> _Metadata:
        answer = self.answers[min(self.asked, len(self.answers) - 1)]
        self.asked += 1
        return _Metadata(answer)


class _Consumer:
    def __init__(self, client: _Client) -> None:
        self._client: Any = client


async def test_it_asks_again_until_every_partition_has_a_leader() -> None:
    client = _Client([{0: -1, 1: 1}, {1: 1}, {0: 1, 1: 1}])
    parts = [TopicPartition("t", 0), TopicPartition("t", 1)]
    await leaders_known(_Consumer(client), parts)
    assert client.asked == 3


async def test_it_gives_up_at_the_deadline_and_lets_the_read_go_on() -> None:
    client = _Client([{0: -1}])
    await leaders_known(_Consumer(client), [TopicPartition("t", 0)], seconds=0.2)
    assert client.asked >= 2
