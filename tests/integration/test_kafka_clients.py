"""The project's Kafka client helpers against the real broker."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from consumers._kafka import start_consumer
from disruptfeed.settings import Settings

pytestmark = pytest.mark.integration

SettingsFactory = Callable[..., Awaitable[Settings]]


async def test_a_consumer_stopped_right_after_start_closes_its_connections(
    make_settings: SettingsFactory,
) -> None:
    # aiokafka 0.14 raised CancelledError from stop() here and leaked the open connections,
    # which surfaced as ResourceWarnings in whichever later test collected them.
    settings = await make_settings()
    for _ in range(3):
        consumer = await start_consumer(settings)
        await consumer.stop()
        assert not consumer._client._conns
