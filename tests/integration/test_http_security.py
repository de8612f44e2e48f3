"""HTTP, secure by default, against real servers: a real worker process and a real dispatcher.

- every path a running worker answers, ours and Faust's own, needs the token (the dashboard's
  sign-in cookie: tests/unit/test_dashboard.py);
- the worker and the dispatcher listen on loopback unless told otherwise (read back from the
  kernel's socket table), and beyond loopback only with a token set (the refusal without one is
  tested in tests/unit/test_http.py, before any broker is contacted);
- request limits on the dispatcher: body, query string, filter values, live streams per token.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from consumers._api import build_app
from disruptfeed.broker import free_port
from disruptfeed.settings import Settings
from tests.integration.delivery import running_dispatcher
from tests.integration.worker import POLL_SECONDS, WorkerProcess
from tests.unit.test_http import FAUST_DEFAULT_PATHS

pytestmark = pytest.mark.integration

SettingsFactory = Callable[..., Awaitable[Settings]]

DISPATCHER_ROUTES = {
    ("GET", "/health"),
    ("GET", "/metrics"),
    ("GET", "/ready"),
    ("GET", "/subscriptions"),
    ("POST", "/subscriptions"),
    ("GET", "/subscriptions/{id}"),
    ("DELETE", "/subscriptions/{id}"),
    ("POST", "/subscriptions/{id}/{action}"),
    ("GET", "/subscriptions/{id}/deliveries"),
    ("GET", "/stream/alerts"),
    ("GET", "/stream/events"),
}
"""Every (method, path) the dispatcher serves; aiohttp adds HEAD to each GET."""


def listening_addresses(port: int) -> set[str]:
    """The local addresses of the sockets listening on ``port`` (from /proc/net/tcp{,6})."""
    found: set[str] = set()
    for name, width in (("tcp", 8), ("tcp6", 32)):
        table = Path("/proc/net") / name
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            address, _, hex_port = fields[1].partition(":")
            if int(hex_port, 16) != port or fields[3] != "0A":  # 0A: LISTEN
                continue
            assert len(address) == width
            raw = bytes.fromhex(address)
            # The kernel prints each 32-bit word in host (little-endian) order.
            words = [raw[i : i + 4][::-1] for i in range(0, len(raw), 4)]
            packed = b"".join(words)
            found.add(str(ipaddress.ip_address(packed)))
    return found


def _unauthorized(status: int, body: bytes) -> bool:
    return status == 401 and b'"unauthorized"' in body


def _get(port: int, path: str, token: str | None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(f"http://127.0.0.1:{port}{path}", headers=headers, timeout=10)
    return response.status_code, response.content


async def test_a_running_worker_answers_nothing_without_the_token_and_listens_on_loopback(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = await make_settings()
    worker = WorkerProcess(settings, tmp_path / "worker")
    worker.start()
    try:
        worker.wait_healthy()
        assert listening_addresses(worker.port) == {"127.0.0.1"}
        ours = ["/", "/counts", "/counts/RU", "/stats", "/alerts", "/counts?scope=local"]
        ours.append("/metrics")  # Prometheus scrapes with the token too
        streams = ["/alerts/stream"]  # a live stream: refused here, served in test_dashboard.py
        for path in [*ours, *streams, *FAUST_DEFAULT_PATHS, "/no-such-path"]:
            for token in (None, "not-the-token"):
                status, body = _get(worker.port, path, token)
                assert _unauthorized(status, body), (path, token, status, body)
        for path in ours:
            assert _get(worker.port, path, worker.token)[0] == 200, path
        for path in FAUST_DEFAULT_PATHS:  # Faust's own views are not served at all
            assert _get(worker.port, path, worker.token)[0] == 404, path
        assert _get(worker.port, "/health", None)[0] == 200
        # Readiness is open too; it turns 200 once the lag has been read from the cluster.
        worker.wait_for(lambda: _get(worker.port, "/ready", None)[0] == 200, "/ready, no token")
        status, body = _get(worker.port, "/counts?at=" + "1" * 3_000, worker.token)
        assert status == 414, body
        assert b"DISRUPTFEED_HTTP_MAX_QUERY_BYTES" in body
    finally:
        worker.stop()


async def test_a_worker_listens_beyond_loopback_when_a_token_is_set(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = await make_settings()
    worker = WorkerProcess(
        settings,
        tmp_path / "worker",
        env={"DISRUPTFEED_WORKER_HOST": "0.0.0.0"},
    )
    worker.start()
    try:
        worker.wait_healthy()
        assert listening_addresses(worker.port) == {"0.0.0.0"}
        assert _get(worker.port, "/counts", None)[0] == 401
    finally:
        worker.stop()


async def test_the_dispatcher_listens_on_loopback_by_default(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = await make_settings()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISRUPTFEED_")}
    env.update(
        {
            "DISRUPTFEED_NO_ENV_FILE": "1",
            "DISRUPTFEED_BOOTSTRAP_SERVERS": settings.bootstrap,
            "DISRUPTFEED_TOPIC_PREFIX": settings.topic_prefix,
            "DISRUPTFEED_DATA_DIR": str(tmp_path),
        }
    )
    log = tmp_path / "dispatcher.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: ASYNC220 - started once, then polled
            [sys.executable, "-m", "disruptfeed", "dispatcher", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while not listening_addresses(port):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the dispatcher never listened:\n" + log.read_text()
            await asyncio.sleep(POLL_SECONDS)
        assert listening_addresses(port) == {"127.0.0.1"}
        # With no token set, it generated one (loopback only) and wants it.
        assert _get(port, "/subscriptions", None)[0] == 401
        token = (tmp_path / "api-token").read_text().strip()
        assert _get(port, "/subscriptions", token)[0] == 200
    finally:
        proc.terminate()
        proc.wait(timeout=60)


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[tuple[web.Application, str]]:
    async with running_dispatcher(settings) as dispatcher:
        app = build_app(settings, dispatcher)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            yield app, f"http://127.0.0.1:{port}"
        finally:
            await runner.cleanup()


async def test_the_dispatcher_serves_exactly_the_expected_routes_all_behind_the_token(
    make_settings: SettingsFactory,
) -> None:
    settings = await make_settings(api_token="dispatcher-token")
    async with serving(settings) as (app, base), httpx.AsyncClient(base_url=base) as http:
        served = set()
        for route in app.router.routes():
            assert route.resource is not None
            served.add((route.method, route.resource.canonical))
        gets = {("HEAD", p) for m, p in DISPATCHER_ROUTES if m == "GET"}
        assert served == DISPATCHER_ROUTES | gets
        fill = {"{id}": "sub_000000000000000000000000", "{action}": "pause"}
        for method, pattern in sorted(served):
            path = pattern
            for key, value in fill.items():
                path = path.replace(key, value)
            for headers in ({}, {"Authorization": "Bearer wrong"}):
                response = await http.request(method, path, headers=headers)
                if path == "/health":
                    assert response.status_code == 200
                    continue
                if path == "/ready":  # open: 503 until its lag is first read, then 200
                    assert response.status_code in (200, 503), (method, path, headers)
                    if method == "GET":
                        assert response.json()["status"] in ("ready", "not ready")
                    continue
                assert response.status_code == 401, (method, path, headers)
                if method != "HEAD":
                    assert response.json()["error"] == "unauthorized"
        # Paths it does not have need the token too, then are 404 as JSON.
        assert (await http.get("/table/")).status_code == 401
        auth = {"Authorization": "Bearer dispatcher-token"}
        missing = await http.get("/table/", headers=auth)
        assert missing.status_code == 404
        assert missing.json() == {"error": "not found"}


async def test_dispatcher_request_limits_answer_json(make_settings: SettingsFactory) -> None:
    settings = await make_settings(
        api_token="limits-token",
        http_max_body_bytes=4_096,
        http_max_query_bytes=256,
        http_max_filter_values=3,
    )
    auth = {"Authorization": "Bearer limits-token"}
    async with serving(settings) as (_, base), httpx.AsyncClient(base_url=base) as http:
        # Body: a declared length over the limit is refused unread ...
        big = await http.post("/subscriptions", content=b"{" + b" " * 5_000 + b"}", headers=auth)
        assert big.status_code == 413
        assert big.json()["limit"] == 4_096

        # ... and so is one sent without a length, once it grows past the limit.
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b" " * 1_000

        chunked = await http.post("/subscriptions", content=chunks(), headers=auth)
        assert chunked.status_code == 413, chunked.text
        assert "DISRUPTFEED_HTTP_MAX_BODY_BYTES" in chunked.json()["error"]
        # Query string.
        long = await http.get("/subscriptions/x/deliveries?limit=" + "1" * 300, headers=auth)
        assert long.status_code == 414
        assert long.json()["limit"] == 256
        # Filter values, in a subscription and in a live stream's query.
        four = ["RU", "CN", "IR", "KP"]
        refused = await http.post(
            "/subscriptions", json={"url": "https://example.org/h", "regions": four}, headers=auth
        )
        assert refused.status_code == 400
        assert refused.json()["field"] == "regions"
        assert "DISRUPTFEED_HTTP_MAX_FILTER_VALUES" in refused.json()["error"]
        stream = await http.get("/stream/alerts?region=" + ",".join(four), headers=auth)
        assert stream.status_code == 400
        assert stream.json()["field"] == "region"
        # Three regions pass; the bad state is what is refused.
        within = await http.get("/stream/alerts?region=RU,CN,IR&state=maybe", headers=auth)
        assert within.json()["field"] == "state"
        # Nothing above made the server unwell.
        assert (await http.get("/subscriptions", headers=auth)).status_code == 200


async def test_live_streams_are_limited_per_token(make_settings: SettingsFactory) -> None:
    settings = await make_settings(api_token="token-a,token-b", http_max_streams_per_token=2)
    async with (
        serving(settings) as (_, base),
        httpx.AsyncClient(base_url=base, timeout=30) as http,
        contextlib.AsyncExitStack() as streams,
    ):
        a, b = ({"Authorization": f"Bearer {t}"} for t in ("token-a", "token-b"))

        async def open_stream(headers: dict[str, str]) -> httpx.Response:
            response = await streams.enter_async_context(
                http.stream("GET", "/stream/alerts", headers=headers)
            )
            if response.status_code == 200:
                lines = response.aiter_lines()
                assert await anext(lines) == "retry: 2000"  # the stream is open on the server
            return response

        first = await open_stream(a)
        await open_stream(a)
        third = await http.get("/stream/alerts", headers=a)
        assert third.status_code == 429
        assert "DISRUPTFEED_HTTP_MAX_STREAMS_PER_TOKEN" in third.json()["error"]
        assert third.headers["Retry-After"]
        # The other token of the rotation has its own allowance.
        assert (await open_stream(b)).status_code == 200
        # Closing a stream gives its place back (the server notices within a second).
        await first.aclose()
        deadline = time.monotonic() + 30
        while (await open_stream(a)).status_code == 429:
            assert time.monotonic() < deadline, "closing a stream never gave its place back"
            await asyncio.sleep(POLL_SECONDS)
