"""Bearer-token checks shared by every HTTP server of the project (worker API, dispatcher).

Tokens come from :meth:`Settings.bearer_tokens`; several may be valid at once so that a token can be
rotated without downtime. Comparison is constant-time, and nothing here logs or echoes a token.
"""

from __future__ import annotations

__all__ = ["OPEN_PATHS", "authorized", "unauthorized_body"]

import hmac
from collections.abc import Sequence
from typing import Final

OPEN_PATHS: Final = frozenset({"/health"})
"""Paths served without a token: liveness probes carry no credentials."""


def authorized(header: str | None, tokens: Sequence[str]) -> bool:
    """Whether an ``Authorization`` header value carries one of ``tokens``.

    Every token is compared, in constant time, whatever matched earlier: the time taken says
    nothing about which token, or how much of one, was right.
    """
    if not header or not tokens:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return False
    candidate = given.strip().encode()
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(candidate, token.encode())
    return matched


def unauthorized_body() -> dict[str, str]:
    """The JSON body of a 401: what to send, never what was expected."""
    return {
        "error": "unauthorized",
        "detail": "send 'Authorization: Bearer <token>' (DISRUPTFEED_API_TOKEN, or the token in "
        "<data dir>/api-token when that is unset)",
    }
