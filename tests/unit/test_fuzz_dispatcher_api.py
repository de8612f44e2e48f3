"""Property-based tests of the dispatcher's HTTP API, served in-process without Kafka.

The application is :func:`consumers._api.build_app` (its middleware, handlers and validation)
over a real :class:`Dispatcher` and :class:`SubscriptionAdmin` whose only stand-ins are the
broker's: a producer that keeps what it is sent, an empty alerts topic and an empty delivery log.
Random methods, path segments, query strings and bodies get only 2xx/4xx answers with JSON bodies
(an ``error`` on every 4xx), and a subscription that is created, shown or changed is the one
asked for. The live streams read Kafka: they are fuzzed in
``tests/integration/test_fuzz_dispatcher_http.py``.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestServer
from hypothesis import event, example, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from yarl import URL

from consumers._api import build_app
from consumers._dispatcher import Dispatcher
from consumers._registry import SubscriptionAdmin
from disruptfeed.settings import Settings
from schemas._subscriptions import DeliveryAttempt
from tests.fuzz import REGIONS, examples, json_values

pytestmark = pytest.mark.unit

TOKEN = "fuzz-dispatcher-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class _Producer:
    """Takes what the admin writes to the subscriptions topic, as an acknowledging broker."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []

    async def send_and_wait(
        self, topic: str, key: bytes | None = None, value: bytes | None = None
    ) -> None:
        self.sent.append((topic, key, value))

    async def flush(self) -> None:
        return None


class _OfflineAdmin(SubscriptionAdmin):
    """The real admin; the alerts topic is empty and so is the delivery log."""

    async def _alert_end_offsets(self) -> dict[int, int]:
        return {0: 0, 1: 0, 2: 0}

    async def deliveries(self, sub_id: str, limit: int = 20) -> list[DeliveryAttempt]:
        self.get(sub_id)  # the real lookup: NotFoundError for an unknown id
        return []


class Api:
    def __init__(self, runner: asyncio.Runner, session: aiohttp.ClientSession, url: str,
                 dispatcher: Dispatcher) -> None:  # fmt: skip
        self.runner, self.session, self.url, self.dispatcher = runner, session, url, dispatcher

    def ids(self) -> list[str]:
        return sorted(self.dispatcher.registry.subscriptions)

    def call(
        self, method: str, path: str, body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:  # fmt: skip
        return self.runner.run(self._call(method, path, body, AUTH if headers is None else headers))

    async def _call(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, Any]:
        url = URL(f"{self.url}{path}", encoded=True)
        async with self.session.request(method, url, data=body, headers=headers) as response:
            raw = await response.read()
            if response.status == 204 or method == "HEAD":
                assert raw == b""
                return response.status, None
            assert response.content_type == "application/json", (response.status, raw[:300])
            answer = orjson.loads(raw)
        assert 200 <= response.status < 500, (response.status, answer)
        if response.status >= 400:
            assert isinstance(answer, dict), answer
            assert isinstance(answer["error"], str), answer
            assert answer["error"], answer
        return response.status, answer


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    with tempfile.TemporaryDirectory() as tmp, asyncio.Runner() as runner:
        settings = Settings(
            data_dir=Path(tmp),
            bootstrap_servers="127.0.0.1:9",  # never contacted
            api_token=SecretStr(TOKEN),
        )
        dispatcher = Dispatcher(settings)
        dispatcher.admin = _OfflineAdmin(settings, dispatcher.registry, _Producer())
        dispatcher.ready.set()
        server = TestServer(build_app(settings, dispatcher))
        runner.run(server.start_server())
        session = runner.run(_session())
        try:
            yield Api(runner, session, str(server.make_url("")).rstrip("/"), dispatcher)
        finally:
            runner.run(session.close())
            runner.run(server.close())


async def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))


# --- bodies of POST /subscriptions


def _mostly(usual: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``usual`` nine times in ten, else ``odd``."""
    return st.integers(0, 9).flatmap(lambda n: odd if n == 0 else usual)


hosts = _mostly(
    st.sampled_from(["8.8.8.8", "93.184.215.14", "[2606:4700:4700::1111]"]),  # public literals
    st.one_of(
        st.ip_addresses(v=4).map(str),
        st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
        st.sampled_from(["localhost", "metadata.google.internal", "a.internal", "x.invalid"]),
        st.text(min_size=1, max_size=10).map(lambda s: quote(s, safe="") + ".invalid"),
        st.text("ab.-é", min_size=1, max_size=70).map(lambda s: s + ".invalid"),  # IDNA limits
    ),
)
"""Hosts that need no DNS server to answer: literals, localhost, and the reserved .invalid."""
ports = _mostly(
    st.none() | st.integers(min_value=1, max_value=65_535).map(str),
    st.integers(min_value=-1, max_value=70_000).map(str) | st.text(max_size=5),
)
urls = _mostly(
    st.builds(
        lambda scheme, host, port, path: (
            f"{scheme}://{host}{'' if port is None else ':' + port}{path}"
        ),
        _mostly(st.sampled_from(["http", "https"]), st.sampled_from(["ftp", "HTTP", ""])),
        hosts,
        ports,
        st.sampled_from(["/hook", "", "/a?b=c", "#x"]) | st.text(max_size=10),
    ),
    st.text(max_size=30),
)
fields: dict[str, st.SearchStrategy[Any]] = {
    "kind": _mostly(st.sampled_from(["webhook", "alertmanager"]), st.just("email")),
    "regions": st.lists(_mostly(st.sampled_from(REGIONS), st.text(max_size=3)), max_size=4),
    "rules": st.lists(st.text(max_size=10), max_size=4),
    "states": st.lists(_mostly(st.sampled_from(["firing", "resolved"]), st.just("x")), max_size=3),
    "min_severity": _mostly(st.sampled_from(["info", "warning", "critical"]), st.just("fatal")),
    "description": st.text(max_size=20),
    "from_beginning": st.booleans(),
}


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()  # integers of any size (orjson stops at 64 bits)


specs = st.fixed_dictionaries(
    {"url": urls},
    optional={name: _mostly(strategy, json_values) for name, strategy in fields.items()},
)
bodies = st.one_of(
    specs.map(_json),
    specs.flatmap(lambda s: json_values.map(lambda junk: _json({**s, "extra": junk}))),
    json_values.map(_json),
    st.binary(max_size=60),
)


@settings(max_examples=examples(1.0))
@given(bodies)
@example(b'{"url": "http://8.8.8.8:99999/hook"}')  # port out of range: ValueError, a 500
@example(b'{"url": "http://8.8.8.8:x/hook"}')  # a port that is no number: ValueError, a 500
@example(b'{"url": "http://localhost\\u0080/hook"}')  # IDNA cannot encode the host: a 500
@example(b'{"url": "http://a..b/hook"}')  # an empty label: IDNA's UnicodeError, a 500
@example(b'{"url": "http://8.8.8.8/hook", "regions": "RU"}')
def test_creating_a_subscription_gives_it_or_the_reason(api: Api, body: bytes) -> None:
    status, answer = api.call("POST", "/subscriptions", body)
    event(str(status))
    if status != 201:
        assert status in (400, 422), answer
        if "problems" in answer:
            for problem in answer["problems"]:
                assert problem["reason"]
        if status == 422:
            assert answer["field"] == "url"
        return
    spec = orjson.loads(body)
    sub = answer["subscription"]
    assert sub["url"] == spec["url"]
    assert sub["kind"] == spec.get("kind", "webhook")
    assert sub["filter"]["regions"] == list(spec.get("regions", []))
    assert sub["filter"]["min_severity"] == spec.get("min_severity", "info")
    assert ("secret" in sub) == (sub["kind"] == "webhook")
    status, shown = api.call("GET", f"/subscriptions/{sub['id']}")
    assert status == 200
    assert shown["subscription"] == {k: v for k, v in sub.items() if k != "secret"}


ids = st.text(min_size=1, max_size=30).filter(lambda s: s not in (".", ".."))
"""Subscription ids as a path segment (percent-encoded): any text but what is no segment."""
limits = st.one_of(
    st.integers(min_value=-5, max_value=1_005).map(str),
    st.sampled_from(["", "\u00b2", "\u0661\u0662", "\U0001d7d9", "1e3", "0x10", " 5", "5 ", "05"]),
    st.text(max_size=6),
)
actions = st.sampled_from(["pause", "resume", "rotate-secret"]) | st.text(min_size=1, max_size=10)


@settings(max_examples=examples(1.5))
@given(
    st.data(),
    st.sampled_from(["show", "delete", "action", "deliveries", "list", "health"]),
    actions,
    st.none() | limits,
    st.booleans(),
)
def test_subscription_routes_answer_for_any_id_action_and_limit(
    api: Api, data: st.DataObject, route: str, action: str, limit: str | None, known: bool
) -> None:
    if known:  # a subscription of its own, so that every example draws the same way
        body = orjson.dumps({"url": "http://8.8.8.8/h", "kind": data.draw(fields["kind"])})
        status, created = api.call("POST", "/subscriptions", body)
        sub_id = created["subscription"]["id"] if status == 201 else "refused"
    else:
        sub_id = data.draw(ids)
    segment = quote(sub_id, safe="")
    query = "" if limit is None else f"?limit={quote(limit, safe='')}"
    exists = sub_id in api.dispatcher.registry.subscriptions
    if set(sub_id) & set("{}"):
        # aiohttp's {id} matches no brace: such a path is no route (and no id we give out).
        status, answer = api.call("GET", f"/subscriptions/{segment}/deliveries{query}")
        assert (status, answer["error"]) == (404, "not found")
        return
    match route:
        case "list":
            status, answer = api.call("GET", f"/subscriptions{query}")
            assert status == 200
            assert {s["id"] for s in answer["subscriptions"]} == set(api.ids())
        case "health":
            status, answer = api.call("GET", f"/health{query}", headers={})
            assert status == 200
            assert answer["status"] == "ok"
        case "show":
            status, answer = api.call("GET", f"/subscriptions/{segment}")
            _check_found(status, answer, exists, sub_id)
        case "delete":
            status, answer = api.call("DELETE", f"/subscriptions/{segment}")
            assert status == (204 if exists else 404), answer
            assert sub_id not in api.dispatcher.registry.subscriptions
        case "action":
            status, answer = api.call("POST", f"/subscriptions/{segment}/{quote(action, safe='')}")
            if set(action) & set("{}"):  # no route, as for an id with a brace
                assert (status, answer["error"]) == (404, "not found")
                return
            if status == 404 and exists:
                if action == "rotate-secret":
                    assert answer["error"].endswith("is an Alertmanager one and has no secret")
                else:
                    assert answer["error"].startswith("no action"), answer
                return
            if not exists and action not in ("pause", "resume", "rotate-secret"):
                assert status == 404, answer
                assert repr(action) in answer["error"] or repr(sub_id) in answer["error"]
                return
            _check_found(status, answer, exists, sub_id)
            if status == 200:
                state = {"pause": "paused", "resume": "active"}.get(action)
                if state is not None:
                    assert answer["subscription"]["state"] == state
                else:
                    assert answer["subscription"]["secret"].startswith("whsec_")
        case "deliveries":
            status, answer = api.call("GET", f"/subscriptions/{segment}/deliveries{query}")
            raw = "20" if limit is None else limit
            if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= 1_000):
                assert (status, answer["field"]) == (400, "limit"), answer
                return
            _check_found(status, answer, exists, sub_id)
            if status == 200:
                assert answer == {"deliveries": []}


def _check_found(status: int, answer: Any, exists: bool, sub_id: str) -> None:
    if exists:
        assert status == 200, answer
    else:
        assert status == 404, answer
        assert repr(sub_id) in answer["error"]  # the message names the id asked for


@settings(max_examples=examples(0.5))
@given(
    st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]),
    st.lists(st.text(max_size=8), min_size=1, max_size=4).map(
        lambda parts: "/" + "/".join(quote(p, safe="") for p in parts)
    ),
    st.text(
        st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="#"), max_size=40
    ),
    st.none() | st.binary(max_size=100),
    st.sampled_from([AUTH, {}, {"Authorization": "Bearer wrong"}]),
)
def test_any_request_gets_a_json_answer_never_a_5xx(
    api: Api, method: str, path: str, query: str, body: bytes | None, headers: dict[str, str]
) -> None:
    if path.startswith("/stream/") or any(p in (".", "..") for p in path.split("/")):
        return  # live streams read Kafka (integration tests); dot-segments are another path
    status, answer = api.call(method, f"{path}?{query}", body, headers)
    if path != "/health" and headers is not AUTH:
        assert status == 401, answer
