"""Bearer-token checks shared by every HTTP server of the project (worker API, dispatcher).

Tokens come from :meth:`Settings.bearer_tokens`; several may be valid at once so that a token can be
rotated without downtime. Comparison is constant-time, and nothing here logs or echoes a token.

A server may listen on a non-loopback address only with tokens set explicitly
(``DISRUPTFEED_API_TOKEN``): the generated token file is a convenience for one machine, not a
credential to hand out (:func:`check_bind`).
"""

from __future__ import annotations

__all__ = ["OPEN_PATHS", "authorized", "check_bind", "is_loopback", "matching_token",
           "unauthorized_body"]  # fmt: skip

import hmac
import ipaddress
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from disruptfeed.errors import ConfigurationError

if TYPE_CHECKING:
    from disruptfeed.settings import Settings

OPEN_PATHS: Final = frozenset({"/health"})
"""Paths served without a token: liveness probes carry no credentials."""


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
