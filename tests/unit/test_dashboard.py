"""The dashboard's sign-in: a session cookie that proves a token, on the worker's real web app.

The scheme and why are in streams/_dashboard.py. Here: what the cookie is and is not, where it
opens and where it does not, the sign-in form's defences, and the pages' security headers. The
page in a real browser is tests/integration/test_dashboard.py.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import AsyncIterator
from http.cookies import SimpleCookie
from pathlib import Path

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer

from disruptfeed.auth import (
    SESSION_COOKIE,
    SESSION_SECONDS,
    matching_session,
    session_cookie,
)
from tests.unit.test_http import TOKENS, _settings, _worker_web_app

pytestmark = pytest.mark.unit

OLD, NEW = TOKENS.split(",")
HTML = {"Accept": "text/html,application/xhtml+xml"}

Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    async with TestClient(TestServer(_worker_web_app(_settings(tmp_path)))) as http:
        yield http


def _set_cookie(response: ClientResponse) -> SimpleCookie:
    jar: SimpleCookie = SimpleCookie()
    for header in response.headers.getall("Set-Cookie", []):
        jar.load(header)
    return jar


async def _sign_in(client: Client, token: str, **headers: str) -> ClientResponse:
    return await client.post(
        "/login", data={"token": token}, headers=headers, allow_redirects=False
    )


def test_the_cookie_proves_a_token_without_carrying_it() -> None:
    expires = int(time.time()) + 60
    value = session_cookie(NEW, expires)
    assert NEW not in value
    assert OLD not in value
    assert value.startswith(f"v1.{expires}.")
    tokens = (OLD, NEW)
    assert matching_session(value, tokens, time.time()) == 1
    assert matching_session(session_cookie(OLD, expires), tokens, time.time()) == 0
    # The token leaves the rotation: its cookies stop working.
    assert matching_session(value, (OLD,), time.time()) is None
    # Expired; expiry moved without the token; MAC of another token; junk.
    assert matching_session(value, tokens, expires + 1) is None
    forged = value.replace(f"v1.{expires}.", f"v1.{expires + 3600}.")
    assert matching_session(forged, tokens, time.time()) is None
    for junk in (None, "", "v1", "v1..", f"v2.{expires}.x", "v1.-5.x", "v1.12é.x", "x" * 500):
        assert matching_session(junk, tokens, time.time()) is None, junk


async def test_signing_in_sets_an_httponly_strict_cookie_that_opens_the_page(
    client: Client,
) -> None:
    # A browser asking for the page without a credential is sent to the form ...
    sent = await client.get("/", headers=HTML, allow_redirects=False)
    assert sent.status == 303
    assert sent.headers["Location"] == "/login"
    # ... an API client gets the usual 401.
    assert (await client.get("/")).status == 401
    form = await client.get("/login")
    assert form.status == 200
    assert 'name="token"' in await form.text()

    signed = await _sign_in(client, NEW)
    assert signed.status == 303
    assert signed.headers["Location"] == "/"
    header = signed.headers["Set-Cookie"]
    assert "HttpOnly" in header
    assert "SameSite=Strict" in header
    assert "Path=/" in header
    assert f"Max-Age={SESSION_SECONDS}" in header
    assert NEW not in header
    value = _set_cookie(signed)[SESSION_COOKIE].value
    assert matching_session(value, (OLD, NEW), time.time()) == 1

    cookie = {"Cookie": f"{SESSION_COOKIE}={value}"}
    page = await client.get("/", headers={**HTML, **cookie})
    assert page.status == 200
    body = await page.text()
    assert "/static/dashboard.js" in body
    assert 'content="15"' in body  # the stream's heartbeat, for the page's stall timeout
    for path in ("/static/dashboard.js", "/static/dashboard.css", "/counts", "/alerts", "/stats"):
        assert (await client.get(path, headers=cookie)).status == 200, path


async def test_the_cookie_is_secure_behind_a_tls_proxy(client: Client) -> None:
    # A proxy that ends TLS talks plain HTTP to the worker and says so in X-Forwarded-Proto or
    # Forwarded (RFC 7239); the cookie must still be Secure, or a browser sends it in the clear
    # on any http:// link to the host. A forged header can only make it stricter.
    plain = await _sign_in(client, NEW)
    assert not _set_cookie(plain)[SESSION_COOKIE]["secure"]
    for headers in (
        {"X-Forwarded-Proto": "https"},
        {"X-Forwarded-Proto": "HTTPS, http"},  # the first hop is the browser's
        {"Forwarded": 'for=192.0.2.60;proto=https;by="203.0.113.43"'},
        {"Forwarded": "proto=https, proto=http"},
    ):
        proxied = await _sign_in(client, NEW, **headers)
        assert proxied.status == 303, headers
        assert _set_cookie(proxied)[SESSION_COOKIE]["secure"], headers
    for headers in ({"X-Forwarded-Proto": "http"}, {"Forwarded": "for=192.0.2.60"}):
        assert not _set_cookie(await _sign_in(client, NEW, **headers))[SESSION_COOKIE]["secure"]


async def test_the_cookie_opens_reads_only_and_only_when_genuine(client: Client) -> None:
    good = session_cookie(OLD, int(time.time()) + 60)
    cookie = {"Cookie": f"{SESSION_COOKIE}={good}"}
    assert (await client.get("/counts", headers=cookie)).status == 200
    assert (await client.head("/counts", headers=cookie)).status == 200
    # Nothing that is not a GET or HEAD takes it: 401, not the 405 a bearer token would get.
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        refused = await client.request(method, "/counts", headers=cookie)
        assert refused.status == 401, method
    authorized = await client.post("/counts", headers={"Authorization": f"Bearer {OLD}"})
    assert authorized.status == 405
    for bad in (
        session_cookie(OLD, int(time.time()) - 1),  # expired
        session_cookie("not-a-token", int(time.time()) + 60),
        good[:-2] + ("AA" if not good.endswith("AA") else "BB"),  # tampered MAC
        OLD,  # the token itself is not a cookie
    ):
        got = await client.get("/counts", headers={"Cookie": f"{SESSION_COOKIE}={bad}"})
        assert got.status == 401, bad
        assert (await got.json())["error"] == "unauthorized"


async def test_the_sign_in_form_refuses_wrong_tokens_and_other_sites(client: Client) -> None:
    wrong = await _sign_in(client, "not-the-token")
    assert wrong.status == 401
    assert "Set-Cookie" not in wrong.headers
    assert "not a token of this worker" in await wrong.text()
    assert "not-the-token" not in await wrong.text()
    empty = await _sign_in(client, "  ")
    assert empty.status == 400
    assert "Set-Cookie" not in empty.headers
    # A page of another site cannot sign a browser in (with the attacker's token) or out.
    forged = await _sign_in(client, NEW, Origin="http://attacker.example")
    assert forged.status == 403
    assert "Set-Cookie" not in forged.headers
    out = await client.post(
        "/logout", headers={"Origin": "http://attacker.example"}, allow_redirects=False
    )
    assert out.status == 403
    assert "Set-Cookie" not in out.headers
    # The worker's own page may (the Origin a browser sends for it).
    own = f"http://{client.host}:{client.port}"
    assert (await _sign_in(client, NEW, Origin=own)).status == 303


async def test_signing_out_clears_the_cookie(client: Client) -> None:
    out = await client.post("/logout", allow_redirects=False)
    assert out.status == 303
    assert out.headers["Location"] == "/login"
    cleared = _set_cookie(out)[SESSION_COOKIE]
    assert cleared.value == ""
    assert cleared["max-age"] == "0"


async def test_pages_send_a_strict_content_security_policy(client: Client) -> None:
    auth = {"Authorization": f"Bearer {NEW}"}
    page = await client.get("/", headers=auth)
    csp = page.headers["Content-Security-Policy"]
    for directive in ("default-src 'none'", "script-src 'self'", "style-src 'self'",
                      "connect-src 'self'", "frame-ancestors 'none'"):  # fmt: skip
        assert directive in csp
    assert "unsafe" not in csp
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    # The sign-in form's one inline style is allowed by its hash, and nothing else is.
    form = await client.get("/login")
    style = re.search(r"<style>(.*)</style>", await form.text(), re.DOTALL)
    assert style is not None
    digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
    login_csp = form.headers["Content-Security-Policy"]
    assert f"style-src 'sha256-{digest}'" in login_csp
    assert "script-src" not in login_csp  # default-src 'none': no script at all
    js = await client.get("/static/dashboard.js", headers=auth)
    assert js.content_type == "text/javascript"
    assert "innerHTML" not in await js.text()  # data goes on the page as text only
