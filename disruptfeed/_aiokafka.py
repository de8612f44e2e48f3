"""Work-arounds for aiokafka defects, and the only uses of its private API, in one place.

aiokafka has no public call for a fresh snapshot of the cluster's metadata (``topics()``
fetches one and keeps only the names; ``partitions_for_topic`` reads a cache that knows only
topics already in use) nor for a client's open connections. Both are reached here, through
``consumer._client``; aiokafka is pinned to 0.14.x in pyproject.toml for it, and
tests/unit/test_compat.py fails if those attributes move.
"""

from __future__ import annotations

__all__ = [
    "cluster_metadata",
    "start_admin_client",
    "start_consumer_client",
    "start_producer_client",
    "stop_client",
    "stop_producer_within",
]

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

START_GRACE_SECONDS = 10.0
"""How long a cancelled start may go on to its end, so that it leaves no connection open."""


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


async def start_admin_client(admin: Any) -> None:
    """``admin.start()``, closing it again when the start fails (see :func:`_started`)."""
    await _started(admin, admin.close)


async def cluster_metadata(client: Any) -> Any:
    """A fresh ``ClusterMetadata`` of the cluster, fetched through a consumer or producer."""
    return await client._client.fetch_all_metadata()


async def stop_client(client: Any) -> None:
    """``client.stop()``; if a cancellation cuts it short, its connections are closed anyway.

    A stop cancelled midway (an HTTP handler whose client went away, then a server shutdown,
    each cancelling it) leaves the client's broker connections open, to leak as unclosed
    sockets. They are closed synchronously then, before the cancellation goes on. No new task
    is started: one started during a shutdown would be cancelled before it ran.
    """
    try:
        await client.stop()
    except asyncio.CancelledError:
        inner = getattr(client, "_client", None)  # aiokafka has no public way to reach them
        for conn in list(getattr(inner, "_conns", {}).values()):
            conn.close()
        raise


async def stop_producer_within(producer: Any, seconds: float) -> bool:
    """Stop an aiokafka producer, giving up on what it still holds after ``seconds``.

    ``stop()`` waits for every pending batch, for ever while the broker is away. Past the
    deadline the sender task is cancelled and the connections closed; the batches it held are
    dropped (their senders were told they were not acknowledged). True if it stopped cleanly.
    """
    try:
        await asyncio.wait_for(stop_client(producer), seconds)
    except TimeoutError:
        sender = getattr(producer, "_sender", None)
        if sender is not None:
            await sender.close()
        await producer.client.close()
        return False
    return True


async def _started(client: Any, close: Callable[[], Awaitable[None]] | None = None) -> None:
    """``client.start()``; if it fails or is cancelled, the client is stopped again.

    A start that fails after bootstrap connected (a timeout, a version lookup error) leaves
    that connection open unless stop() runs: aiokafka #1130. A start *cancelled* during
    bootstrap's metadata request leaves it open even then: bootstrap holds it in a local
    variable, outside the client's connections, and does not close it on CancelledError. So a
    cancelled start is let run to its end (at most :data:`START_GRACE_SECONDS`) before the
    client is stopped and the cancellation goes on.
    """
    starting = asyncio.ensure_future(client.start())
    try:
        await asyncio.shield(starting)
    except asyncio.CancelledError:
        await _finish(starting)
        await _stop(client, close)
        raise
    except BaseException:
        await _stop(client, close)
        raise


async def _finish(starting: asyncio.Future[Any]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_GRACE_SECONDS
    while not starting.done() and loop.time() < deadline:
        # A repeated cancellation (a shutdown after a timeout) waits for the same start.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait([starting], timeout=deadline - loop.time())
    if not starting.done():
        starting.cancel()
    with contextlib.suppress(BaseException):
        await starting


async def _stop(client: Any, close: Callable[[], Awaitable[None]] | None) -> None:
    if close is None:
        await stop_client(client)
    else:
        await close()
