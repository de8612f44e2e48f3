"""Property-based tests of the worker's HTTP query API, served in-process without Kafka.

Two workers are built with :func:`streams.app.create_app` (the aiohttp application Faust serves,
with its real middleware and views), each given counts and alerts through its processor, and
served on loopback; the first is told the second is its group peer, so that ``/counts`` and
``/alerts`` gather over HTTP as they do in a group. Random paths, path segments, query strings,
methods and bodies get only 2xx/4xx answers with JSON bodies (an ``error`` on every 4xx); a
gathered answer is the union of each worker's ``?scope=local`` answer to the same query, and
``/counts/{region}`` holds that region only.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from faust.web.drivers.aiohttp import Web as AiohttpWeb
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from yarl import URL

from disruptfeed.settings import Settings
from schemas import codec
from streams.app import create_app, worker_state
from tests.factories import account, network
from tests.fuzz import REGIONS, examples

pytestmark = pytest.mark.unit

TOKEN = "fuzz-worker-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Worker:
    app: Any
    url: str


def _worker(data_dir: Path, regions: list[str]) -> tuple[Any, web.Application]:
    settings = Settings(
        data_dir=data_dir,
        worker_store="memory://",
        bootstrap_servers="127.0.0.1:9",  # never contacted: the app is built, not started
        api_token=SecretStr(TOKEN),
    )
    app = create_app(settings)
    app.finalize()
    state = worker_state(app)
    state.recovered = True
    topics = {kind: topic for topic, kind in state.processor.topic_types.items()}
    offset = 0
    for n, region in enumerate(regions):
        # A burst (an alert fires) an hour or a week apart per region, and a network.
        events = [
            account(region, minutes=n * 600 + i * 5 - 60 * 24 * 7 * (n % 2)) for i in range(7)
        ]
        for event in [*events, network(region)]:
            outcome = state.processor.process(
                topics[event.type], 0, offset, codec.key(event), codec.encode(event),
                codec.headers(event),
            )  # fmt: skip
            assert outcome.dead_letter is None
            offset += 1
    driver = app.web
    assert isinstance(driver, AiohttpWeb)
    driver.init_server()  # what the worker's web service does when it starts
    return app, driver.web_app


@pytest.fixture(scope="module")
def workers() -> Iterator[tuple[asyncio.Runner, aiohttp.ClientSession, Worker, Worker]]:
    """Worker A (RU, CN counted) gathering from its peer B (IR, KP, US counted), both served."""
    with tempfile.TemporaryDirectory() as tmp, asyncio.Runner() as runner:
        a_app, a_web = _worker(Path(tmp) / "a", ["RU", "CN"])
        b_app, b_web = _worker(Path(tmp) / "b", ["IR", "KP", "US"])
        servers = [TestServer(a_web), TestServer(b_web)]
        for server in servers:
            runner.run(server.start_server())
        a_url, b_url = (str(s.make_url("")).rstrip("/") for s in servers)
        # The group's assignment names each member's URL; A's says B owns other partitions.
        a_app.assignor.tables_metadata = lambda: {b_url: {}}
        session = runner.run(_session())
        try:
            yield runner, session, Worker(a_app, a_url), Worker(b_app, b_url)
        finally:
            runner.run(session.close())
            for server in servers:
                runner.run(server.close())


async def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))


async def _call(
    session: aiohttp.ClientSession, method: str, url: str, body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:  # fmt: skip
    async with session.request(
        method, URL(url, encoded=True), data=body, headers=AUTH if headers is None else headers
    ) as response:
        raw = await response.read()
        if method == "HEAD":
            return response.status, None
        if response.content_type == "text/html":
            # The dashboard's pages (/, /login) answer in HTML; every error is still JSON.
            assert response.status < 400, (response.status, raw[:200])
            assert raw.lstrip().lower().startswith(b"<!doctype html>"), raw[:200]
            return response.status, raw
        assert response.content_type == "application/json", (response.status, raw[:200])
        return response.status, orjson.loads(raw)


def _check_answer(status: int, body: Any) -> None:
    assert 200 <= status < 500, (status, body)
    if status >= 400:
        assert isinstance(body, dict), body
        assert isinstance(body["error"], str), body
        assert body["error"], body


# --- the parts of a request

segments = st.sampled_from(REGIONS) | st.text(min_size=1, max_size=12)
"""A region in a path: a code, or any text (which the server sees percent-decoded)."""
offsets = st.timedeltas(min_value=-dt.timedelta(hours=23), max_value=dt.timedelta(hours=23))
datetimes = st.datetimes(
    min_value=dt.datetime(1, 1, 2),
    max_value=dt.datetime(9999, 12, 30),
    timezones=st.one_of(st.none(), st.just(dt.UTC), st.builds(dt.timezone, offsets)),
)
values = st.one_of(
    datetimes.map(dt.datetime.isoformat),
    st.sampled_from(["local", "", "2026-03-01T12:00Z", "2026-03-01", "now", "0", "-1"]),
    st.text(max_size=30),
)
pairs = st.lists(
    st.tuples(st.sampled_from(["at", "scope", "region", "limit"]) | st.text(max_size=6), values),
    max_size=4,
)


def _query(items: list[tuple[str, str]]) -> str:
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in items)


def _local(items: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The same query asking one worker for its own partitions only."""
    return [(k, v) for k, v in items if k != "scope"] + [("scope", "local")]


def _gathers(items: list[tuple[str, str]]) -> bool:
    return next((v for k, v in items if k == "scope"), None) != "local"


@settings(max_examples=examples(1.2))
@given(st.none() | segments, pairs)
@example("IR?x", [])  # forwarded unquoted: the peer answered for IR
@example("a/b", [])  # forwarded unquoted: the peer answered 404, the gathered answer 503
@example(None, [("at", "2026-03-01T12:00Z"), ("at", "2026-03-08T12:00Z")])  # peers took the last
def test_counts_are_the_union_of_each_workers_part(
    workers: tuple[asyncio.Runner, aiohttp.ClientSession, Worker, Worker],
    region: str | None,
    items: list[tuple[str, str]],
) -> None:
    runner, session, a, b = workers
    if region in (".", ".."):
        return  # dot-segments name another path (RFC 3986 5.2.4): not a region
    path = "/counts" if region is None else f"/counts/{quote(region, safe='')}"
    query = _query(items)
    status, body = runner.run(_call(session, "GET", f"{a.url}{path}?{query}"))
    _check_answer(status, body)
    if status == 404:
        # aiohttp's {region} matches no brace: such a path is no route (and no region code).
        assert region is not None, body
        assert set(region) & set("{}"), body
        return
    if status != 200:
        assert status == 400, body
        assert "at=" in body["error"]  # the only thing a query can get wrong here: ?at=
        return
    local = _query(_local(items))
    _, mine = runner.run(_call(session, "GET", f"{a.url}{path}?{local}"))
    _, theirs = runner.run(_call(session, "GET", f"{b.url}{path}?{local}"))
    assert body == ({**mine, **theirs} if _gathers(items) else mine)
    if region is not None:
        assert set(body) <= {region}


@settings(max_examples=examples(0.6))
@given(pairs)
def test_alerts_are_the_union_of_each_workers_part(
    workers: tuple[asyncio.Runner, aiohttp.ClientSession, Worker, Worker],
    items: list[tuple[str, str]],
) -> None:
    runner, session, a, b = workers
    status, body = runner.run(_call(session, "GET", f"{a.url}/alerts?{_query(items)}"))
    _check_answer(status, body)
    assert status == 200
    local = _query(_local(items))
    _, mine = runner.run(_call(session, "GET", f"{a.url}/alerts?{local}"))
    _, theirs = runner.run(_call(session, "GET", f"{b.url}/alerts?{local}"))
    if not _gathers(items):
        assert body == mine
        return
    alerts = sorted(
        mine["alerts"] + theirs["alerts"], key=lambda x: (x["starts_at"], x["fingerprint"])
    )
    assert body["alerts"] == alerts
    assert {x["region"] for x in alerts} == {"RU", "CN", "IR", "KP", "US"}
    assert body["stream_time"] == max(mine["stream_time"], theirs["stream_time"])


paths = st.one_of(
    st.sampled_from(["/counts", "/stats", "/alerts", "/health", "/"]),
    segments.map(lambda s: f"/counts/{quote(s, safe='')}"),
    st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=3).map(
        lambda parts: "/" + "/".join(quote(p, safe="") for p in parts)
    ),
)
raw_queries = st.one_of(
    pairs.map(_query),
    st.text(
        st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="#"), max_size=40
    ),  # raw, as a URL may carry it: %ff, a lone %, ...
    st.just("at=" + "9" * 3_000),  # past the query limit
)


@settings(max_examples=examples(1.2))
@given(
    st.sampled_from(["GET", "GET", "GET", "HEAD", "POST", "PUT", "DELETE"]),
    paths,
    raw_queries,
    st.none() | st.binary(max_size=100),
    st.sampled_from([AUTH, {}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}]),
)
@example("GET", "/counts", "at=%ff", None, AUTH)  # not UTF-8 once decoded
@example("GET", "/counts", "at=-999999999-01-01", None, AUTH)
def test_any_request_gets_a_json_answer_never_a_5xx(
    workers: tuple[asyncio.Runner, aiohttp.ClientSession, Worker, Worker],
    method: str,
    path: str,
    query: str,
    body: bytes | None,
    headers: dict[str, str],
) -> None:
    runner, session, a, _ = workers
    if any(part in (".", "..") for part in path.split("/")):
        return  # dot-segments name another path (RFC 3986 5.2.4)
    status, answer = runner.run(_call(session, method, f"{a.url}{path}?{query}", body, headers))
    if method == "HEAD":
        assert 200 <= status < 500, status
        return
    _check_answer(status, answer)
    if path != "/health" and headers is not AUTH:
        assert status == 401
        assert answer["error"] == "unauthorized"
