"""Live streams (SSE) against the real broker: filters, resume, since, slow clients."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import orjson
import pytest
from aiohttp import web

from consumers._stream_client import SSEMessage, follow_sse
from consumers._streams import add_stream_routes, decode_position, encode_position
from disruptfeed.settings import Settings
from producers import FeedProducer
from tests.factories import account, make_alert, network
from tests.integration.delivery import publish_alerts, wait_until

pytestmark = pytest.mark.integration

SettingsFactory = Callable[..., Awaitable[Settings]]


@contextlib.asynccontextmanager
async def streaming(settings: Settings) -> AsyncIterator[str]:
    app = web.Application()
    add_stream_routes(app, settings)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def _take(stream: AsyncIterator[SSEMessage], n: int, timeout: float = 30) -> list[SSEMessage]:
    got: list[SSEMessage] = []

    async def take() -> None:
        async for message in stream:
            got.append(message)
            if len(got) == n:
                return

    await asyncio.wait_for(take(), timeout)
    return got


def test_positions_round_trip_and_refuse_other_layouts() -> None:
    position = {(0, 0): 5, (0, 1): 0, (0, 2): 17}
    text = encode_position(position)
    assert decode_position(text, set(position)) == position
    for bad in ("", "v2.0-0-1", "v1.", "v1.0-0", "v1.a-b-c", encode_position({(0, 0): 1})):
        with pytest.raises(ValueError, match=r"."):
            decode_position(bad, set(position))


async def test_filtered_live_stream_resumes_with_no_gap_and_no_duplicate(
    make_settings: SettingsFactory,
) -> None:
    settings = await make_settings()
    ru = [make_alert("RU", n=i) for i in range(12)]
    noise = [make_alert("CN", n=100 + i) for i in range(6)]
    async with streaming(settings) as base:
        url = f"{base}/stream/alerts"
        # From a time just before the first batch: no race with the stream's own start.
        since = dt.datetime.now(dt.UTC).isoformat()
        await publish_alerts(settings, [*ru[:6], *noise[:3]])
        first = follow_sse(url, params={"region": "RU", "since": since})
        got = await _take(first, 5)
        await first.aclose()
        last = got[-1].id
        assert last is not None
        # While the client is away, more alerts arrive.
        await publish_alerts(settings, [*ru[6:], *noise[3:]])
        rest = await _take(follow_sse(url, params={"region": "RU"}, last_event_id=last), 7)
    ids = [orjson.loads(m.data)["alert_id"] for m in got + rest]
    assert len(ids) == len(set(ids)) == 12  # no duplicate...
    assert set(ids) == {str(a.alert_id) for a in ru}  # ...no gap, and only RU
    assert all(m.event == "alert" for m in got + rest)


async def test_since_starts_at_a_time_and_filters_by_state_and_severity(
    make_settings: SettingsFactory,
) -> None:
    settings = await make_settings()
    before = [make_alert(n=i) for i in range(3)]
    await publish_alerts(settings, before)
    cut = dt.datetime.now(dt.UTC)
    await wait_until(lambda: dt.datetime.now(dt.UTC) > cut, "the clock to pass the cut", 5)
    after = [
        make_alert(n=10),
        make_alert(n=11, status="resolved"),
        make_alert(n=12, severity="info"),
        make_alert(n=13),
    ]
    await publish_alerts(settings, after)
    async with streaming(settings) as base:
        params = {"since": cut.isoformat(), "state": "firing", "severity": "warning"}
        got = await _take(follow_sse(f"{base}/stream/alerts", params=params), 2)
    ids = {orjson.loads(m.data)["alert_id"] for m in got}
    assert ids == {str(after[0].alert_id), str(after[3].alert_id)}


async def test_event_stream_filters_by_type_and_region(make_settings: SettingsFactory) -> None:
    settings = await make_settings()
    events = [account("RU"), network("RU"), account("CN"), account("RU")]
    async with FeedProducer(settings) as producer:
        await producer.publish_many(events)
    async with streaming(settings) as base:
        since = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
        params = {"type": "account.disrupted", "region": "RU", "since": since}
        got = await _take(follow_sse(f"{base}/stream/events", params=params), 2)
    assert {m.event for m in got} == {"account.disrupted"}
    ids = {orjson.loads(m.data)["event_id"] for m in got}
    assert ids == {str(events[0].event_id), str(events[3].event_id)}


async def test_heartbeats_keep_a_quiet_stream_open(make_settings: SettingsFactory) -> None:
    settings = await make_settings(sse_heartbeat_seconds=0.2)
    async with (
        streaming(settings) as base,
        httpx.AsyncClient(timeout=10) as client,
        client.stream("GET", f"{base}/stream/alerts") as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        beats = 0
        async for line in response.aiter_lines():
            beats += line == ": heartbeat"
            if beats == 3:
                break
    assert beats == 3


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("region=XX", "region"),
        ("severity=loud", "severity"),
        ("state=maybe", "state"),
        ("since=yesterday", "since"),
        ("since=2026-01-01T00:00:00", "since"),
        ("last_event_id=v1.9-9-9", "Last-Event-ID"),
        ("last_event_id=garbage", "Last-Event-ID"),
        ("region=" + ",".join(["RU"] * 301), "region"),
    ],
)
async def test_bad_parameters_get_400_with_the_field(
    make_settings: SettingsFactory, query: str, field: str
) -> None:
    settings = await make_settings()
    async with streaming(settings) as base, httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"{base}/stream/alerts?{query}")
    assert response.status_code == 400
    assert response.json()["field"] == field
    assert response.json()["error"]


async def test_a_client_that_stops_reading_is_dropped_with_a_last_message(
    make_settings: SettingsFactory,
) -> None:
    settings = await make_settings(sse_buffer=10)
    async with streaming(settings) as base:
        port = int(base.rsplit(":", 1)[1])
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a slow reader's window
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock)
        try:
            writer.write(b"GET /stream/alerts HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b": stream open\n\n"), 10)
            assert b"200 OK" in head
            # Far more than the socket buffers and the server's queue can hold, unread.
            await publish_alerts(settings, [make_alert(n=i) for i in range(3000)])
            # Now read everything the server sent before it hung up.
            rest = await asyncio.wait_for(reader.read(-1), 60)
        finally:
            writer.close()
            await writer.wait_closed()
    # The body is chunked: the last message is the error event, then the closing chunk.
    last = rest.rsplit(b"event: ", 1)[-1]
    assert last.startswith(b"error\ndata: "), rest[-300:]
    goodbye = orjson.loads(last.removeprefix(b"error\ndata: ").split(b"\n", 1)[0])
    assert goodbye["error"] == "client too slow"
    assert goodbye["last_event_id"].startswith("v1.")
    delivered = rest.count(b"event: alert")
    assert 0 < delivered < 3000
