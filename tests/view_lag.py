"""How long the worker's query views hold the event loop, with a million retained events.

Run: ``.venv/bin/python -m tests.view_lag [--events 1000000] [--rounds 5]``

Builds a real worker app in this process (:func:`streams.app.create_app`, in-memory store, no
broker), fills its count store with ``--events`` retained events (all inside the 7-day window,
spread over ten regions' partitions), and serves its aiohttp application on a free port. While
a "consumer" task keeps counting new events in batches (as the agent does) and a probe measures
how late each 1 ms timer fires, it asks every query view over HTTP and prints, per view, the
slowest answer and the worst pause of the event loop seen while it was being answered. The
``baseline`` line is the same probe with the consumer alone.

Nothing here asserts a time: the numbers go to the README and the report, not to a test.
"""

from __future__ import annotations

__all__ = ["LagProbe", "fill", "main"]

import argparse
import asyncio
import contextlib
import itertools
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from streams._windows import WINDOWS, Counted, CountStore

T0_MS = 1_790_000_000_000
"""Event time of the first filled event (October 2026)."""
REGIONS = ("RU", "CN", "IR", "KP", "BY", "VE", "SY", "MM", "NG", "PK")


class LagProbe:
    """A task that sleeps ``interval`` seconds again and again and keeps the worst overshoot.

    The overshoot of a timer is how long the loop was busy elsewhere when it was due: the pause
    any other coroutine (the agent, a heartbeat) would have seen.
    """

    def __init__(self, interval: float = 0.001) -> None:
        self.interval = interval
        self.worst = 0.0
        self.ticks = 0
        self._due = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._due = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            self.worst = max(self.worst, loop.time() - self._due)
            self.ticks += 1

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[LagProbe]:
        """Probe while the block runs (after one tick, so the probe is surely scheduled)."""
        self.worst, self.ticks = 0.0, 0
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(self.interval * 2)  # the probe's first timer is set
        self.worst = 0.0
        try:
            yield self
        finally:
            # A tick overdue now (the block ended right after a pause) has not run to say so.
            self.worst = max(self.worst, asyncio.get_running_loop().time() - self._due)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _events(start_ms: int, step_ms: int) -> Iterator[Counted]:
    for i in itertools.count():
        region = REGIONS[i % len(REGIONS)]
        source = f"feed.account-disrupted:{i % len(REGIONS)}"
        yield Counted("account.disrupted", region, start_ms + i * step_ms, 1 + i % 7, False, source)


def fill(store: CountStore, events: int) -> Iterator[Counted]:
    """Add ``events`` retained events inside the last 7 days; returns the stream that follows."""
    step = max(1, (WINDOWS["7d"] - 60_000) // events)
    stream = _events(T0_MS, step)
    for counted in itertools.islice(stream, events):
        store.add(counted)
    return stream


async def _consume(store: CountStore, stream: Iterator[Counted], batch: int = 500) -> None:
    """Count new events in batches, yielding between them, like the agent."""
    while True:
        for counted in itertools.islice(stream, batch):
            store.add(counted)
        await asyncio.sleep(0)


async def _measure(port: int, token: str, paths: list[str], rounds: int,
                   store: CountStore, stream: Iterator[Counted]) -> None:  # fmt: skip
    import aiohttp

    probe = LagProbe()
    consumer = asyncio.create_task(_consume(store, stream))
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with probe.running():
            await asyncio.sleep(1.0)  # the consumer alone, for comparison
        print(f"{'baseline (consumer only)':<28} {'':>12} worst pause {probe.worst * 1000:7.1f} ms")
        async with aiohttp.ClientSession(headers=headers) as session:
            for path in paths:  # a first request each, unmeasured: connection, first calls
                async with session.get(f"http://127.0.0.1:{port}{path}") as response:
                    assert response.status == 200, (path, response.status)
            for path in paths:
                slowest = worst = 0.0
                for _ in range(rounds):
                    async with probe.running():
                        began = time.perf_counter()
                        async with session.get(f"http://127.0.0.1:{port}{path}") as response:
                            assert response.status == 200, (path, response.status)
                            await response.read()
                        slowest = max(slowest, time.perf_counter() - began)
                    worst = max(worst, probe.worst)
                print(
                    f"GET {path:<24} {slowest * 1000:7.1f} ms    worst pause {worst * 1000:7.1f} ms"
                )
    finally:
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer


def main() -> None:
    """Measure and print; see the module docstring."""
    from aiohttp import web
    from faust.web.drivers.aiohttp import Web as AiohttpWeb
    from pydantic import SecretStr

    from disruptfeed.broker import free_port
    from disruptfeed.settings import Settings
    from streams.app import create_app, worker_state

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()

    token = "view-lag-token"
    settings = Settings(
        data_dir=Path(tempfile.mkdtemp(prefix="view-lag-")),
        worker_store="memory://",
        bootstrap_servers="127.0.0.1:9",  # never contacted: no worker is started
        api_token=SecretStr(token),
    )
    app = create_app(settings)
    app.finalize()
    state = worker_state(app)
    state.recovered = True
    began = time.perf_counter()
    stream = fill(state.processor.store, args.events)
    print(f"filled {args.events:,} retained events in {time.perf_counter() - began:.1f} s")
    driver = app.web
    assert isinstance(driver, AiohttpWeb)
    driver.init_server()
    port = free_port()

    async def go() -> None:
        runner = web.AppRunner(driver.web_app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            paths = ["/stats", "/counts", "/counts/RU", "/counts?at=2026-10-01T00:00Z", "/alerts"]
            await _measure(port, token, paths, args.rounds, state.processor.store, stream)
        finally:
            await runner.cleanup()

    asyncio.run(go())


if __name__ == "__main__":
    main()
