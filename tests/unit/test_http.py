"""Every route the worker serves is behind the token; binding beyond loopback needs a set token.

The worker's routes are read from the aiohttp application Faust builds for a real
:func:`streams.app.create_app` (the same object a running worker serves), so a route added later,
by us or by a Faust upgrade, changes the list and fails here until it is looked at.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from faust.web.drivers.aiohttp import Web as AiohttpWeb
from pydantic import SecretStr

from disruptfeed.auth import check_bind, is_loopback, matching_token
from disruptfeed.errors import ConfigurationError
from disruptfeed.settings import Settings
from streams.app import create_app, worker_state

pytestmark = pytest.mark.unit

TOKENS = "old-worker-token,new-worker-token"

WORKER_ROUTES = {
    ("GET", "/"),  # the dashboard (streams._dashboard), in place of Faust's production index
    ("GET", "/alerts"),
    ("GET", "/counts"),
    ("GET", "/counts/{region}"),
    ("GET", "/health"),
    ("GET", "/metrics"),
    ("GET", "/ready"),
    ("GET", "/static/dashboard.css"),
    ("GET", "/static/dashboard.js"),
    ("GET", "/stats"),
}
"""Every (method, path) the worker's web server answers 200 to with the token; HEAD comes with each
GET. The dashboard's other routes, in DASHBOARD_ROUTES, are served too."""

DASHBOARD_ROUTES = {
    ("GET", "/alerts/stream"),  # SSE, behind the token (tests/integration/test_dashboard.py)
    ("GET", "/login"),  # open: the sign-in form
    ("POST", "/login"),  # open: a token in, a session cookie out
    ("POST", "/logout"),  # open: clears the cookie
}

FAUST_DEFAULT_PATHS = [
    "/router/",
    "/router/topics",
    "/router/events/",
    "/router/events/RU/",
    "/table/",
    "/table/events/",
    "/table/events/x/",
    "/graph/",
    "/assignment/",
    "/performance/",
]
"""Where Faust's own blueprints (router, tables, graph, stats, metrics) would be served."""


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    fields: dict[str, object] = {
        "data_dir": tmp_path,
        "worker_store": "memory://",
        "bootstrap_servers": "127.0.0.1:9",  # never contacted: the app is built, not started
        "api_token": TOKENS,
    }
    fields.update(overrides)
    return Settings(**fields)  # type: ignore[arg-type]


def _worker_web_app(settings: Settings) -> web.Application:
    app = create_app(settings)
    app.finalize()
    worker_state(app).recovered = True
    driver = app.web
    assert isinstance(driver, AiohttpWeb)
    driver.init_server()  # what the worker's web service does when it starts
    return driver.web_app


@pytest.fixture
async def worker_http(
    tmp_path: Path,
) -> AsyncIterator[tuple[web.Application, TestClient[web.Request, web.Application]]]:
    web_app = _worker_web_app(_settings(tmp_path))
    async with TestClient(TestServer(web_app)) as client:
        yield web_app, client


def _served(app: web.Application) -> set[tuple[str, str]]:
    routes = set()
    for route in app.router.routes():
        assert route.resource is not None
        routes.add((route.method, route.resource.canonical))
    return routes


def _concrete(path: str) -> str:
    return path.replace("{region}", "RU")


async def test_the_worker_serves_exactly_the_expected_routes_all_behind_the_token(
    worker_http: tuple[web.Application, TestClient[web.Request, web.Application]],
) -> None:
    web_app, client = worker_http
    served = _served(web_app)
    routes = WORKER_ROUTES | DASHBOARD_ROUTES
    assert served == routes | {("HEAD", p) for m, p in routes if m == "GET"}
    for method, path in sorted(served):
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": "old-worker-token"},
        ):
            response = await client.request(method, _concrete(path), headers=headers)
            if path == "/health":
                assert response.status == 200, (method, path)
                continue
            if path in {"/login", "/logout"}:  # open: the form, an empty sign-in, signing out
                expected = 400 if (method, path) == ("POST", "/login") else 200  # 303 to /login
                assert response.status == expected, (method, path)
                continue
            if path == "/ready":  # open too; this app was never assigned partitions
                assert response.status == 503, (method, path)
                if method == "GET":
                    assert "no source partitions" in (await response.json())["reason"]
                continue
            assert response.status == 401, (method, path, headers)
            if method == "GET":
                body = await response.json()
                assert body["error"] == "unauthorized"
                assert "worker-token" not in await response.text()
    for token in TOKENS.split(","):  # either token of a rotation
        for _, path in sorted(WORKER_ROUTES - {("GET", "/ready")}):
            got = await client.get(_concrete(path), headers={"Authorization": f"Bearer {token}"})
            assert got.status == 200, (path, await got.text())


async def test_fausts_own_views_are_off_and_unknown_paths_need_the_token_too(
    worker_http: tuple[web.Application, TestClient[web.Request, web.Application]],
) -> None:
    _, client = worker_http
    auth = {"Authorization": "Bearer new-worker-token"}
    for path in [*FAUST_DEFAULT_PATHS, "/no-such-path"]:
        refused = await client.get(path)
        assert refused.status == 401, path
        missing = await client.get(path, headers=auth)
        assert missing.status == 404, path
        assert (await missing.json())["error"] == "not found"
    # A method a view does not have: 405, as JSON, once the token is right.
    wrong = await client.post("/counts", headers=auth)
    assert wrong.status == 405
    assert "GET" in wrong.headers["Allow"]


async def test_worker_request_limits_answer_json(tmp_path: Path) -> None:
    settings = _settings(tmp_path, http_max_query_bytes=100, http_max_body_bytes=2_048)
    auth = {"Authorization": "Bearer old-worker-token"}
    async with TestClient(TestServer(_worker_web_app(settings))) as client:
        at_limit = await client.get("/counts?at=" + "x" * 97, headers=auth)  # 100 bytes
        assert at_limit.status == 400  # the view itself answers: not a time
        assert "ISO 8601" in (await at_limit.json())["error"]
        long = await client.get("/counts?at=" + "x" * 101, headers=auth)
        assert long.status == 414
        assert (await long.json())["limit"] == 100
        big = await client.get("/counts", data=b"x" * 2_049, headers=auth)
        assert big.status == 413
        assert "DISRUPTFEED_HTTP_MAX_BODY_BYTES" in (await big.json())["error"]
        # Unauthenticated callers learn nothing about the limits: the token comes first.
        assert (await client.get("/counts?at=" + "x" * 500)).status == 401


def test_matching_token_finds_which_of_a_rotation_and_refuses_the_rest() -> None:
    tokens = ("first-token", "second-token")
    assert matching_token("Bearer first-token", tokens) == 0
    assert matching_token("bearer  second-token ", tokens) == 1
    for header in (None, "", "Bearer", "Bearer ", "first-token", "Basic first-token",
                   "Bearer first-toke", "Bearer first-token2"):  # fmt: skip
        assert matching_token(header, tokens) is None, header
    assert matching_token("Bearer x", ()) is None


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("10.1.2.3", False),
        ("192.0.2.1", False),
        ("no-such-host.invalid", False),
    ],
)
def test_loopback_is_told_apart(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_a_non_loopback_bind_needs_an_explicit_token(tmp_path: Path) -> None:
    generated = Settings(data_dir=tmp_path)
    generated.bearer_tokens()  # a generated token file exists: still not enough
    with pytest.raises(ConfigurationError, match="DISRUPTFEED_API_TOKEN") as refused:
        check_bind("0.0.0.0", generated, "DISRUPTFEED_WORKER_HOST")
    assert "\n" not in str(refused.value)
    assert "DISRUPTFEED_WORKER_HOST" in str(refused.value)
    with pytest.raises(ConfigurationError):
        check_bind("0.0.0.0", Settings(data_dir=tmp_path, api_token=SecretStr(" , ")), "X")
    check_bind("127.0.0.1", generated, "DISRUPTFEED_WORKER_HOST")
    check_bind("0.0.0.0", Settings(data_dir=tmp_path, api_token=SecretStr("set")), "X")


@pytest.mark.parametrize(
    ("command", "host_variable"),
    [("worker", "DISRUPTFEED_WORKER_HOST"), ("dispatcher", "DISRUPTFEED_DISPATCHER_HOST")],
)
def test_servers_refuse_to_start_beyond_loopback_without_a_token(
    tmp_path: Path, command: str, host_variable: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISRUPTFEED_")}
    env.update(
        {
            "DISRUPTFEED_NO_ENV_FILE": "1",
            "DISRUPTFEED_DATA_DIR": str(tmp_path),
            # Nothing listens here: the refusal must come before any broker is contacted.
            "DISRUPTFEED_BOOTSTRAP_SERVERS": "127.0.0.1:9",
            host_variable: "0.0.0.0",
        }
    )
    done = subprocess.run(
        [sys.executable, "-m", "disruptfeed", command],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 4, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: refusing to listen on '0.0.0.0'")
    assert "DISRUPTFEED_API_TOKEN" in lines[0]
    assert host_variable in lines[0]
    assert not (tmp_path / "api-token").exists()  # nothing was generated on the way
