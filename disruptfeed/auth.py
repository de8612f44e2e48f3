"""Bearer-token checks shared by every HTTP server of the project (worker API, dispatcher).

Tokens come from :meth:`Settings.bearer_tokens`; several may be valid at once so that a token can be
rotated without downtime. Comparison is constant-time, and nothing here logs or echoes a token.

A server may listen on a non-loopback address only with tokens set explicitly
(``DISRUPTFEED_API_TOKEN``): the generated token file is a convenience for one machine, not a
credential to hand out (:func:`check_bind`).

Browsers cannot put a bearer header on a page navigation, so the worker's dashboard also takes a
session cookie (:func:`session_cookie`, :func:`matching_session`), set by ``POST /login`` for a
token typed into its form: ``v1.<expiry>.<HMAC-SHA256 of the expiry keyed with the token>``, a
proof of the token that names neither the token nor which of them. It is checked in constant
time against every token, like a bearer header, and stops working when its token is removed
from ``DISRUPTFEED_API_TOKEN`` or at its expiry (:data:`SESSION_SECONDS`). Which requests may
use it, and why, is in :mod:`streams._dashboard`.
"""

from __future__ import annotations

__all__ = ["OPEN_PATHS", "SESSION_COOKIE", "SESSION_PATHS", "SESSION_SECONDS", "authorized",
           "check_bind", "is_loopback", "matching_session", "matching_token", "session_cookie",
           "unauthorized_body"]  # fmt: skip

import base64
import hashlib
import hmac
import ipaddress
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from disruptfeed.errors import ConfigurationError

if TYPE_CHECKING:
    from disruptfeed.settings import Settings

OPEN_PATHS: Final = frozenset({"/health", "/ready"})
"""Paths served without a token: liveness and readiness probes carry no credentials (and the
answers say only whether a server is up and ready, and why not)."""

SESSION_PATHS: Final = frozenset({"/login", "/logout"})
"""Also served without a token by a server that offers browser sessions (the worker): the
sign-in form, which holds no data, and signing out, which only clears the cookie."""

SESSION_COOKIE: Final = "disruptfeed_session"
SESSION_SECONDS: Final = 12 * 3600
"""How long a session cookie is good for: a working day, then the token is asked for again."""

_SESSION_CONTEXT: Final = b"disruptfeed dashboard session v1|"
"""What a session MAC covers besides the expiry: a MAC made for anything else never matches."""


def matching_token(header: str | None, tokens: Sequence[str]) -> int | None:
    """The index in ``tokens`` of the token an ``Authorization`` header carries, or None.

    Every token is compared, in constant time, whatever matched earlier: the time taken says
    nothing about how much of a token was right. (Which of the valid tokens matched is not a
    secret: servers count live streams per token with it.)
    """
    if not header or not tokens:
        return None
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return None
    candidate = given.strip().encode()
    hits = [hmac.compare_digest(candidate, token.encode()) for token in tokens]
    return hits.index(True) if any(hits) else None


def session_cookie(token: str, expires: int) -> str:
    """The session cookie value for ``token``, good until ``expires`` (Unix seconds).

    ``v1.<expires>.<MAC>``, the MAC being HMAC-SHA256 keyed with the token over a fixed context
    and the expiry (base64url): it proves the token was known without carrying it, and the
    expiry cannot be moved without the token.
    """
    message = _SESSION_CONTEXT + str(expires).encode()
    mac = hmac.new(token.encode(), message, hashlib.sha256).digest()
    return f"v1.{expires}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def matching_session(cookie: str | None, tokens: Sequence[str], now: float) -> int | None:
    """The index in ``tokens`` of the token a session cookie was made with, or None.

    None for a malformed, forged or expired cookie, or one made with a token no longer listed.
    Like :func:`matching_token`, every token is compared, in constant time.
    """
    if not cookie or not tokens or not cookie.isascii() or len(cookie) > 100:
        return None
    version, _, rest = cookie.partition(".")
    expires_text, _, _ = rest.partition(".")
    if version != "v1" or not expires_text.isdigit():
        return None
    expires = int(expires_text)
    if expires <= now:
        return None
    given = cookie.encode()
    hits = [hmac.compare_digest(given, session_cookie(t, expires).encode()) for t in tokens]
    return hits.index(True) if any(hits) else None


def authorized(header: str | None, tokens: Sequence[str]) -> bool:
    """Whether an ``Authorization`` header value carries one of ``tokens``."""
    return matching_token(header, tokens) is not None


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` listens on loopback addresses only.

    An IP literal is checked as it is; a name must resolve to loopback addresses only. The
    empty host, ``0.0.0.0`` and ``::`` (every interface) and names that do not resolve are not
    loopback.
    """
    name = host.strip().removeprefix("[").removesuffix("]")
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        pass
    if not name:
        return False
    try:
        found = {info[4][0] for info in socket.getaddrinfo(name, None)}
    except OSError:
        return False
    return bool(found) and all(
        ipaddress.ip_address(str(addr).split("%")[0]).is_loopback for addr in found
    )


def check_bind(host: str, settings: Settings, host_variable: str) -> None:
    """Refuse to serve on ``host`` when it is not loopback and no token is set explicitly.

    Raises:
        ConfigurationError: one line naming DISRUPTFEED_API_TOKEN and ``host_variable``.
    """
    if is_loopback(host):
        return
    if settings.api_token is not None and settings.bearer_tokens(create=False):
        return
    raise ConfigurationError(
        f"refusing to listen on {host or 'every interface'!r} ({host_variable}) without "
        "DISRUPTFEED_API_TOKEN: set it to the token(s) clients must send, or bind 127.0.0.1"
    )


def unauthorized_body() -> dict[str, str]:
    """The JSON body of a 401: what to send, never what was expected."""
    return {
        "error": "unauthorized",
        "detail": "send 'Authorization: Bearer <token>' (DISRUPTFEED_API_TOKEN, or the token in "
        "<data dir>/api-token when that is unset)",
    }
