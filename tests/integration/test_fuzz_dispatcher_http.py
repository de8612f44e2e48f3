"""Property-based tests of the dispatcher's routes that read Kafka, against the session broker.

The live streams (``/stream/alerts``, ``/stream/events``) open a consumer per request, and
creating a subscription reads the alerts topic's end, listing deliveries the delivery log: these
run with a real dispatcher on the real broker, with fewer examples than the in-process tests
(``tests/unit/test_fuzz_dispatcher_api.py``). Random filters, times, stream ids and limits get a
stream (200, ``text/event-stream``) or a 4xx with a JSON error naming the parameter; never a 5xx.

The dispatcher and its HTTP server run on an event loop that runs only while a request is sent
(see ``_served``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import pytest
from aiohttp import web
from hypothesis import example, given, settings
from hypothesis import strategies as st

from consumers._api import build_app
from disruptfeed.settings import Settings
from tests.factories import make_alert
from tests.fuzz import REGIONS, examples
from tests.integration.delivery import publish_alerts, running_dispatcher

pytestmark = pytest.mark.integration

SettingsFactory = Callable[..., Awaitable[Settings]]
TOKEN = "fuzz-stream-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

times = st.datetimes(
    min_value=dt.datetime(1, 1, 2),
    max_value=dt.datetime(9999, 12, 30),
    timezones=st.one_of(st.none(), st.just(dt.UTC)),
).map(dt.datetime.isoformat)
positions = st.one_of(
    st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=4).map(
        lambda offsets: "v1." + ".".join(f"0-{p}-{o}" for p, o in enumerate(offsets))
    ),
    st.lists(
        st.tuples(*(st.sampled_from(["0", "1", "2", "x", "", "\u00b2", "-1"]),) * 3), max_size=4
    ).map(lambda parts: "v1." + ".".join("-".join(p) for p in parts)),
    st.text(max_size=20),
)
"""Last-Event-ID values: well-formed for the alerts layout or not, and any text."""
headers = positions.map(lambda text: "".join(c for c in text if c.isprintable()))
"""The same, as a header may carry them (no control characters)."""
params = st.lists(
    st.tuples(
        st.sampled_from(["region", "rule", "state", "severity", "type", "since", "last_event_id"]),
        st.one_of(
            st.sampled_from([*REGIONS[:5], "unknown", "firing", "resolved", "critical", "info"]),
            st.sampled_from(["account.disrupted", "report.released", "RU,CN", ",", "ru"]),
            times,
            positions,
            st.text(max_size=10),
        ),
    ),
    max_size=4,
)


ID_REASONS = ("an id this server gave out", "malformed part", "another topic layout")
"""What a refused Last-Event-ID is told (consumers._streams.decode_position)."""


def _aware(text: str) -> bool:
    try:
        return dt.datetime.fromisoformat(text).tzinfo is not None
    except ValueError:
        return False


def _query(items: list[tuple[str, str]]) -> str:
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in items)


async def _stream(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> tuple[int, Any]:
    """The status and the JSON error, or the first bytes of the stream (then hang up)."""
    async with session.get(url, headers=headers) as response:
        if response.status == 200:
            assert response.content_type == "text/event-stream"
            return 200, await response.content.readuntil(b"\n\n")
        assert response.content_type == "application/json", response.status
        return response.status, orjson.loads(await response.read())


async def _call(
    session: aiohttp.ClientSession, method: str, url: str, body: bytes | None = None
) -> tuple[int, Any]:
    async with session.request(method, url, data=body, headers=AUTH) as response:
        assert response.content_type == "application/json", response.status
        return response.status, orjson.loads(await response.read())


def _check_error(status: int, answer: Any) -> None:
    assert 400 <= status < 500, (status, answer)
    assert isinstance(answer["error"], str), answer
    assert answer["error"], answer


@contextlib.contextmanager
def _served(
    settings: Settings,
) -> Iterator[tuple[Callable[[Any], Any], aiohttp.ClientSession, str]]:
    """A running dispatcher and its API; ``run`` sends a coroutine on their event loop.

    The loop runs only inside ``run``: while Hypothesis draws an example nothing else runs (the
    clients' own use of the random module would look like the strategies' to Hypothesis).
    """
    with asyncio.Runner() as runner:

        async def start(stack: contextlib.AsyncExitStack) -> tuple[aiohttp.ClientSession, str]:
            await publish_alerts(settings, [make_alert("RU", n=n) for n in range(3)])
            dispatcher = await stack.enter_async_context(running_dispatcher(settings))
            session = await stack.enter_async_context(aiohttp.ClientSession())
            app = web.AppRunner(build_app(settings, dispatcher), access_log=None)
            await app.setup()
            stack.push_async_callback(app.cleanup)
            site = web.TCPSite(app, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            return session, f"http://127.0.0.1:{port}"

        stack = contextlib.AsyncExitStack()
        try:
            session, base = runner.run(start(stack))
            yield runner.run, session, base
        finally:
            runner.run(stack.aclose())


def test_live_stream_parameters_open_a_stream_or_name_the_problem(
    make_settings: SettingsFactory,
) -> None:
    async def made() -> Settings:
        return await make_settings(api_token=TOKEN, webhook_allow_private=True)

    with asyncio.Runner() as setup:
        settings = setup.run(made())
    with _served(settings) as (run, session, base):
        _streams(run, session, base)
        _subscriptions(run, session, base)


def _streams(run: Callable[[Any], Any], session: aiohttp.ClientSession, base: str) -> None:
    @settings(max_examples=examples(1.0))
    @given(st.sampled_from(["alerts", "events"]), params, st.none() | headers)
    @example("alerts", [("since", "1960-01-01T00:00:00+00:00")], None)  # before 1970: a 500
    @example("alerts", [], "v1.0-0-\u00b2.0-1-0.0-2-0")  # '²'.isdigit(), int('²') fails
    @example("alerts", [], "v1.0-0-0.0-1-0.0-2-0")  # the start of each partition
    def check(kind: str, items: list[tuple[str, str]], last: str | None) -> None:
        headers = dict(AUTH) if last is None else {**AUTH, "Last-Event-ID": last}
        status, answer = run(_stream(session, f"{base}/stream/{kind}?{_query(items)}", headers))
        if last is None and items and all(k == "since" for k, _ in items) and _aware(items[0][1]):
            assert status == 200, answer  # any time with a timezone is a place to start
        if status == 200:
            assert answer.startswith(b"retry: 2000\n: stream open")
            return
        _check_error(status, answer)
        assert status == 400, answer
        names = {k for k, _ in items} | {"Last-Event-ID"}
        assert answer["field"] in names, answer
        if answer["field"] == "Last-Event-ID":
            assert any(why in answer["error"] for why in ID_REASONS), answer

    check()


def _subscriptions(run: Callable[[Any], Any], session: aiohttp.ClientSession, base: str) -> None:
    created: list[str] = []

    @settings(max_examples=examples(1.0))
    @given(
        # Loopback is allowed here (settings below): nothing leaves the machine; port 9 refuses.
        st.sampled_from(["http://127.0.0.1:9/hook", "http://127.0.0.1:99999/", "ftp://x"]),
        st.booleans(),
        st.none() | st.integers(min_value=-1, max_value=1_001).map(str) | st.text(max_size=4),
    )
    def check(url: str, from_beginning: bool, limit: str | None) -> None:
        body = orjson.dumps({"url": url, "from_beginning": from_beginning})
        status, answer = run(_call(session, "POST", f"{base}/subscriptions", body))
        if status != 201:
            _check_error(status, answer)
            assert status == 400, answer
            assert answer["problems"][0]["field"] == "url", answer
            sub_id = "sub_000000000000000000000000"
        else:
            sub = answer["subscription"]
            assert sub["url"] == url
            assert bool(sub["start_offsets"]) != from_beginning  # read from the alerts topic
            sub_id = sub["id"]
            created.append(sub_id)
        query = "" if limit is None else f"?limit={quote(limit, safe='')}"
        status, answer = run(
            _call(session, "GET", f"{base}/subscriptions/{sub_id}/deliveries{query}")
        )
        raw = "20" if limit is None else limit
        if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= 1_000):
            assert (status, answer["field"]) == (400, "limit"), answer
        elif sub_id in created:
            assert status == 200, answer
            assert len(answer["deliveries"]) <= int(raw)
            assert {d["subscription_id"] for d in answer["deliveries"]} <= {sub_id}
        else:
            _check_error(status, answer)
            assert status == 404

    check()
    assert created  # the property was checked on real subscriptions too
