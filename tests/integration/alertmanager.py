"""A real Alertmanager for tests: the binary fixture, and a webhook that records what it sends.

Integration tests get the ``alertmanager_bin`` fixture through tests/integration/conftest.py and
import the sink with ``from tests.integration.alertmanager import WebhookSink``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pytest
from aiohttp import web

from disruptfeed._alertmanager import alertmanager_binary
from disruptfeed.errors import MissingToolError
from disruptfeed.settings import Settings

GO_MISSING = (
    "Alertmanager test needs Go 1.26+ (apt-get install golang-go, or https://go.dev/dl); CI has it"
)


@pytest.fixture(scope="session")
def alertmanager_bin() -> Path:
    """The Alertmanager binary from the project's cache, built there on first use (~90 s)."""
    try:
        return alertmanager_binary(Settings().cache_dir)
    except MissingToolError:
        # Go is part of the toolchain 'make test' needs, like Java: a missing Go fails the test
        # with what to install, rather than skipping it and proving nothing.
        pytest.fail(GO_MISSING)


@dataclass(frozen=True, slots=True)
class Notification:
    """One POST the sink received: its JSON body and when it arrived (UTC)."""

    body: dict[str, Any]
    received_at: datetime


class WebhookSink:
    """An aiohttp server on 127.0.0.1 that records every JSON body POSTed to it.

    Start it with ``async with WebhookSink() as sink:`` and give ``sink.url`` to the sender.
    """

    def __init__(self, path: str = "/webhook") -> None:
        self.path = path
        self.received: list[Notification] = []
        self._arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """Where to POST; valid once started."""
        assert self._runner is not None, "start() the sink first"
        return f"http://127.0.0.1:{self.port}{self.path}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(self.path, self._record)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        # Port 0: the kernel picks a free port, so there is no race with other tests.
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _record(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.Response(status=400, text="expected a JSON body")
        self.received.append(Notification(body, datetime.now(UTC)))
        self._arrived.set()
        return web.Response(status=200)

    async def wait_for(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        timeout: float = 30,
    ) -> Notification:
        """Return the first notification whose body satisfies ``predicate``, waiting if needed.

        Looks again on every arrival, until the deadline; never sleeps a fixed time.

        Raises:
            AssertionError: None matched within ``timeout`` seconds (lists what did arrive).
        """
        try:
            async with asyncio.timeout(timeout):
                while True:
                    # Cleared before looking, so an arrival after the look still wakes the wait.
                    self._arrived.clear()
                    for notification in self.received:
                        if predicate(notification.body):
                            return notification
                    await self._arrived.wait()
        except TimeoutError:
            seen = [n.body for n in self.received]
            raise AssertionError(
                f"no matching notification at {self.url} within {timeout:g} s; got {seen}"
            ) from None
