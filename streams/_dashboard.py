"""The live dashboard: one page at ``/`` on the worker, for people.

It shows the rolling counts per region (1 h / 24 h / 7 d, as an SVG bar chart drawn by our own
script and as a table), the alerts firing now, and a live feed of alert transitions, updated
without a reload: ``/counts`` and ``/alerts`` are polled every 5 s and after each transition, and
the transitions come over ``GET /alerts/stream``, the dispatcher's alerts stream
(:mod:`consumers._streams`: from the end of the alerts topic, ``Last-Event-ID`` to resume with no
gap, a heartbeat every ``DISRUPTFEED_SSE_HEARTBEAT_SECONDS``, at most
``DISRUPTFEED_HTTP_MAX_STREAMS_PER_TOKEN`` open per token). The page says when the stream is
down and reconnects with exponential backoff (1 s doubling to 15 s, with jitter). The files are
in ``streams/dashboard/`` (package data): no build step, no third-party script.

Signing in, and why this way. Browsers cannot put a bearer header on a page navigation, and the
page is to sit behind the same token as the API. So:

- ``GET /login`` is a form (served without a token: it holds no data) that posts the token to
  ``POST /login``. A token that matches one of the worker's (constant time, like the header)
  gets a cookie, ``HttpOnly; SameSite=Strict; Path=/`` (``Secure`` over HTTPS, also when a
  TLS-ending proxy says so in ``X-Forwarded-Proto`` or ``Forwarded``), whose value is a
  MAC of an expiry keyed with the token (:func:`disruptfeed.auth.session_cookie`), not the token;
  it lasts 12 hours, and ends sooner when its token leaves ``DISRUPTFEED_API_TOKEN``.
- The guard (:mod:`disruptfeed._http`, built with ``sessions=True`` here) accepts that cookie in
  place of the header, on GET and HEAD only: the shell, its script and style, ``/counts``,
  ``/alerts``, ``/stats``, ``/alerts/stream``. A browser asking for ``/`` without it is sent to
  ``/login``; anything else without a credential is the usual 401. Streams opened with a cookie
  count against its token's allowance.

Why not keep the token in the page (sessionStorage) and send it as a header? Then any script
that ever ran in the page could read it and use it anywhere until it is rotated; an HttpOnly
cookie cannot be read by script at all, and only ever goes back to this host. Why is the cookie
safe to send automatically? SameSite=Strict keeps other sites' pages from sending it, the routes
it opens only read, and ``POST /login`` and ``/logout`` refuse a request whose ``Origin`` is
another site's (no signing a victim in with an attacker's token). The pages send a strict
Content-Security-Policy (our own script and style only, no framing) and put the server's data
on the page as text, never as markup.
"""

from __future__ import annotations

__all__ = ["register_dashboard"]

import base64
import hashlib
import html
import time
from functools import cache
from importlib import resources
from typing import Any, Final
from urllib.parse import urlsplit

from aiohttp import web

from consumers._streams import add_alert_stream_route
from disruptfeed.auth import SESSION_COOKIE, SESSION_SECONDS, matching_token, session_cookie
from disruptfeed.settings import Settings

ASSETS: Final = {
    "/static/dashboard.js": ("dashboard.js", "text/javascript"),
    "/static/dashboard.css": ("dashboard.css", "text/css"),
}
"""The shell's script and style (behind the token or session, like the shell)."""

_PAGE_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
_COMMON_HEADERS: Final = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Not no-referrer: with it, browsers send "Origin: null" on our own form posts.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_TOKEN_FIELD_BYTES: Final = 4_096


@cache
def _text(name: str) -> str:
    return (resources.files("streams") / "dashboard" / name).read_text(encoding="utf-8")


def _page(settings: Settings) -> web.Response:
    body = _text("index.html").replace(
        "{{HEARTBEAT_SECONDS}}", f"{settings.sse_heartbeat_seconds:g}"
    )
    headers = {**_COMMON_HEADERS, "Content-Security-Policy": _PAGE_CSP}
    return web.Response(text=body, content_type="text/html", headers=headers)


def _login_page(error: str | None = None, status: int = 200) -> web.Response:
    style = _text("login.css")
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    body = (
        _text("login.html")
        .replace("{{STYLE}}", style)
        .replace("{{ERROR_HIDDEN}}", "" if error else " hidden")
        .replace("{{ERROR}}", html.escape(error or ""))
    )
    csp = (
        f"default-src 'none'; style-src 'sha256-{digest}'; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    )
    headers = {**_COMMON_HEADERS, "Content-Security-Policy": csp}
    return web.Response(text=body, status=status, content_type="text/html", headers=headers)


def _same_origin(request: web.Request) -> bool:
    """False for a request a page of another origin sent (its ``Origin`` names that origin).

    Browsers send ``Origin`` on every cross-origin POST; a request without one is not from a
    browser page of another site.
    """
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    # The host and port only: behind a TLS-terminating proxy the scheme differs.
    return urlsplit(origin).netloc == request.host


def _over_https(request: web.Request) -> bool:
    """Whether the browser's request came over HTTPS, here or to a proxy that ended TLS.

    The proxy's word (the first hop of ``X-Forwarded-Proto`` or ``Forwarded``'s ``proto``) is
    taken without asking who sent it: it only decides whether the cookie is ``Secure``, and a
    forged "https" only keeps the cookie off plain HTTP, which harms no one but the forger.
    """
    if request.secure:
        return True
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0]
    if forwarded.strip().lower() == "https":
        return True
    first = request.headers.get("Forwarded", "").split(",")[0]
    for pair in first.split(";"):
        name, _, value = pair.partition("=")
        if name.strip().lower() == "proto":
            return value.strip().strip('"').lower() == "https"
    return False


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={**_COMMON_HEADERS, "Location": location})


def register_dashboard(app: Any, settings: Settings, tokens: tuple[str, ...]) -> None:
    """Serve the dashboard, sign-in and ``/alerts/stream`` on a Faust app's web server.

    Faust's own index at ``/`` ({"status": "OK"}) is dropped: the dashboard takes its place.
    """
    from faust.web.base import BlueprintManager

    # Every other Faust blueprint is switched off in create_app; the production index has no
    # switch, and would take "/" first.
    app.web.blueprints = BlueprintManager()
    router = app.web.web_app.router

    async def index(request: web.Request) -> web.StreamResponse:
        return _page(settings)

    async def asset(request: web.Request) -> web.StreamResponse:
        name, content_type = ASSETS[request.path]
        headers = {**_COMMON_HEADERS, "Cache-Control": "no-cache"}
        return web.Response(text=_text(name), content_type=content_type, headers=headers)

    async def login_form(request: web.Request) -> web.StreamResponse:
        return _login_page()

    async def login(request: web.Request) -> web.StreamResponse:
        if not _same_origin(request):
            return _login_page("Sign in from this worker's own page.", status=403)
        form = await request.post()
        given = form.get("token")
        token = given.strip() if isinstance(given, str) else ""
        if not token or len(token) > _TOKEN_FIELD_BYTES:
            return _login_page("Enter an API token.", status=400)
        index = matching_token(f"Bearer {token}", tokens)
        if index is None:
            return _login_page("That is not a token of this worker.", status=401)
        response = _see_other("/")
        expires = int(time.time()) + SESSION_SECONDS
        response.set_cookie(
            SESSION_COOKIE,
            session_cookie(tokens[index], expires),
            max_age=SESSION_SECONDS,
            path="/",
            httponly=True,
            samesite="Strict",
            secure=_over_https(request),
        )
        return response

    async def logout(request: web.Request) -> web.StreamResponse:
        if not _same_origin(request):
            return _login_page("Sign out from this worker's own page.", status=403)
        response = _see_other("/login")
        response.del_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="Strict")
        return response

    router.add_get("/", index)
    for path in ASSETS:
        router.add_get(path, asset)
    router.add_get("/login", login_form)
    router.add_post("/login", login)
    router.add_post("/logout", logout)
    add_alert_stream_route(app.web.web_app, settings, "/alerts/stream")
