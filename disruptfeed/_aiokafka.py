"""Work-arounds for aiokafka defects, in one place so they can go when aiokafka is fixed."""

from __future__ import annotations

__all__ = ["start_consumer_client", "start_producer_client"]

import asyncio
from typing import Any


async def start_consumer_client(consumer: Any) -> None:
    """``consumer.start()``, then one loop turn.

    aiokafka 0.14's ``NoGroupCoordinator.close()`` cancels its reset task and awaits it; when
    that task never ran (a consumer stopped right after it started), ``stop()`` raises
    ``CancelledError`` before it closes the fetcher and the connections, which then leak as
    unclosed sockets. One turn of the loop lets the task start, so ``stop()`` completes.
    """
    await _started(consumer)
    await asyncio.sleep(0)


async def start_producer_client(producer: Any) -> None:
    """``producer.start()``, stopping it again when the start fails (see :func:`_started`)."""
    await _started(producer)


async def _started(client: Any) -> None:
    # A start that fails after bootstrap connected (a timeout, a cancellation, a version
    # lookup error) leaves that connection open unless stop() runs: aiokafka #1130.
    try:
        await client.start()
    except BaseException:
        await asyncio.shield(client.stop())
        raise
