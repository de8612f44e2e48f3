"""The one aiohttp middleware in front of every HTTP server of the project.

The worker's query API (mounted on Faust's aiohttp application) and the dispatcher's API both
install :func:`guard` first, so every route either server has, now or later, and every path it
does not have, goes through it:

1. the bearer token (:mod:`disruptfeed.auth`), except on :data:`~disruptfeed.auth.OPEN_PATHS`:
   401 with a JSON reason, before anything else is looked at. A server built with
   ``sessions=True`` (the worker, for its dashboard: :mod:`streams._dashboard`) also serves
   :data:`~disruptfeed.auth.SESSION_PATHS` without a token, takes a valid session cookie in
   place of the header on GET and HEAD only (no request that changes anything accepts it), and
   sends a browser that asks for ``/`` without either to ``/login`` (303) instead of the 401;
2. the query string's length (``DISRUPTFEED_HTTP_MAX_QUERY_BYTES``): 414;
3. the body's declared length (``DISRUPTFEED_HTTP_MAX_BODY_BYTES``): 413 before a byte of it is
   read; a body without a length that grows past the limit while a handler reads it is stopped
   by aiohttp's ``client_max_size`` (set to the same value), also answered 413;
4. any HTTP error a handler or the router raises (404, 405, 413, ...) is answered as JSON.

The index of the token that matched is left on the request (:data:`TOKEN_INDEX`), so that
handlers can count per token (live streams).
"""

from __future__ import annotations

__all__ = ["TOKEN_INDEX", "application_options", "cluster_unavailable", "guard", "json_error"]

import logging
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any, Final

import orjson
from aiohttp import web

from disruptfeed.auth import (
    OPEN_PATHS,
    SESSION_COOKIE,
    SESSION_PATHS,
    matching_session,
    matching_token,
    unauthorized_body,
)
from disruptfeed.errors import BrokerError, ConnectionSecurityError
from disruptfeed.settings import Settings

log = logging.getLogger(__name__)

TOKEN_INDEX: Final = web.RequestKey("matched-token-index", int)
"""The index of the bearer token the request carried (absent on open paths)."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]

_KEPT_HEADERS: Final = ("Allow", "Retry-After")
_PHRASES: Final = {status.value: status.phrase for status in HTTPStatus}


def json_error(
    status: int, message: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> web.Response:
    """A JSON error answer: ``{"error": message, **extra}``."""
    return web.Response(
        body=orjson.dumps({"error": message, **extra}, option=orjson.OPT_SORT_KEYS),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def cluster_unavailable(exc: BrokerError | ConnectionSecurityError) -> web.Response:
    """503 for a request the server cannot serve because its Kafka cluster turns it away.

    It is the server's trouble, not the request's: the client is told to try again later
    (Retry-After). A broker that does not answer is named; a connection security failure (the
    server's own credentials or TLS settings, say a rotated password) is logged for the
    operator with the setting to fix, and the answer holds none of it.
    """
    headers = {"Retry-After": "30"}
    if isinstance(exc, ConnectionSecurityError):
        log.error("the Kafka cluster refused this server's connection: %s", exc)
        message = (
            "the server cannot connect to its Kafka cluster; its operator finds why in the "
            "server's log"
        )
        return json_error(503, message, headers=headers)
    return json_error(503, str(exc), headers=headers)


def guard(settings: Settings, tokens: tuple[str, ...], *, sessions: bool = False) -> Middleware:
    """The middleware: token, then request limits, then JSON for HTTP errors (module docstring)."""
    max_query = settings.http_max_query_bytes
    max_body = settings.http_max_body_bytes
    open_paths = (OPEN_PATHS | SESSION_PATHS) if sessions else OPEN_PATHS

    def credential(request: web.Request) -> int | None:
        index = matching_token(request.headers.get("Authorization"), tokens)
        if index is None and sessions and request.method in {"GET", "HEAD"}:
            cookie = request.cookies.get(SESSION_COOKIE)
            index = matching_session(cookie, tokens, time.time())
        return index

    def stopped(request: web.Request) -> web.Response | None:
        """The answer when the request goes no further than the guard: steps 1-3."""
        if request.path not in open_paths:
            index = credential(request)
            if index is None:
                return _refusal(request, sessions=sessions)
            request[TOKEN_INDEX] = index
        query = request.raw_path.partition("?")[2]
        if len(query) > max_query:
            return json_error(
                414,
                f"the query string is {len(query)} bytes; at most {max_query} are read "
                "(DISRUPTFEED_HTTP_MAX_QUERY_BYTES)",
                limit=max_query,
            )
        declared = request.content_length
        if declared is not None and declared > max_body:
            return _too_large(max_body, declared)
        return None

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        refused = stopped(request)
        if refused is not None:
            return refused
        try:
            return await handler(request)
        except web.HTTPRequestEntityTooLarge:
            return _too_large(max_body, None)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            kept = {k: exc.headers[k] for k in _KEPT_HEADERS if k in exc.headers}
            standard = exc.reason == _PHRASES.get(exc.status)  # "Not Found": "not found"
            message = exc.reason.lower() if standard else exc.reason
            return json_error(exc.status, message, headers=kept or None)

    return middleware


def _refusal(request: web.Request, *, sessions: bool) -> web.Response:
    """401 with a JSON reason; a browser asking for the dashboard is sent to sign in instead."""
    browser = request.method in {"GET", "HEAD"} and "text/html" in request.headers.get("Accept", "")
    if sessions and request.path == "/" and browser:
        return web.Response(status=303, headers={"Location": "/login"})
    refusal = unauthorized_body()
    return json_error(401, refusal["error"], detail=refusal["detail"])


def _too_large(limit: int, declared: int | None) -> web.Response:
    size = f"{declared} bytes" if declared is not None else "larger than that"
    response = json_error(
        413,
        f"the request body is {size}; at most {limit} bytes are read "
        "(DISRUPTFEED_HTTP_MAX_BODY_BYTES)",
        limit=limit,
    )
    response.force_close()  # the unread body must not be taken for the next request
    return response


def application_options(
    settings: Settings, tokens: tuple[str, ...], *, sessions: bool = False
) -> dict[str, Any]:
    """Keyword arguments for ``aiohttp.web.Application``: the guard and the body limit."""
    return {
        "middlewares": [guard(settings, tokens, sessions=sessions)],
        "client_max_size": settings.http_max_body_bytes,
    }
