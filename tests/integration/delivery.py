"""Helpers for push-delivery tests: programmable receivers, alerts, an in-process dispatcher."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from consumers._dispatcher import Dispatcher
from disruptfeed.settings import Settings
from disruptfeed.topics import ALERTS
from schemas import Alert, alert_headers, alert_key, encode_alert

POLL = 0.05


@dataclass
class Received:
    """One request a receiver got."""

    at: float
    headers: dict[str, str]
    body: bytes
    status: int = 0
    """The status the receiver answered with (0 while it is still answering)."""

    @property
    def status_ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)


Behaviour = Callable[[web.Request, int], Awaitable[web.StreamResponse]]


async def ok(request: web.Request, n: int) -> web.StreamResponse:
    return web.Response(status=204)


@dataclass
class Receiver:
    """An HTTP endpoint on 127.0.0.1 that records every request and answers per ``behaviour``.

    ``behaviour(request, n)`` gets the 1-based number of the request and returns the response.
    """

    behaviour: Behaviour = ok
    requests: list[Received] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        got = Received(time.monotonic(), dict(request.headers), body)
        self.requests.append(got)
        response = await self.behaviour(request, len(self.requests))
        got.status = response.status
        return response

    def alert_ids(self) -> list[str]:
        return [r.json["data"]["alert_id"] for r in self.requests]

    async def wait_for(self, condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
        await wait_until(condition, what, timeout)


async def busy_for(seconds: float) -> None:
    """Simulate a receiver's own processing time (what an endpoint spends per request).

    Not a wait for a condition: the receiver is slow on purpose, so deliveries stay in flight.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    loop.call_later(seconds, done.set_result, None)
    await done


async def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """Poll ``condition`` until it holds, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(POLL)


@contextlib.asynccontextmanager
async def receiver(behaviour: Behaviour = ok, port: int = 0) -> AsyncIterator[Receiver]:
    """A started :class:`Receiver` on ``port`` (0: a free one)."""
    r = await Receiver(behaviour, port=port).start()
    try:
        yield r
    finally:
        await r.stop()


async def publish_alerts(settings: Settings, alerts: list[Alert]) -> None:
    """Publish alerts to the alerts topic as the worker does, and wait for the acks."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(**settings.client_kwargs(), acks="all")
    await producer.start()
    try:
        for alert in alerts:
            await producer.send(
                settings.topic(ALERTS),
                key=alert_key(alert),
                value=encode_alert(alert),
                headers=alert_headers(alert),
            )
        await producer.flush()
    finally:
        await producer.stop()


@contextlib.asynccontextmanager
async def running_dispatcher(settings: Settings) -> AsyncIterator[Dispatcher]:
    """A dispatcher running in this event loop, stopped (and every client closed) on exit."""
    dispatcher = Dispatcher(settings)
    await dispatcher.start()
    task = asyncio.create_task(dispatcher.run())
    try:
        await asyncio.wait_for(dispatcher.ready.wait(), 30)
        yield dispatcher
        if task.done():
            task.result()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await dispatcher.stop()
