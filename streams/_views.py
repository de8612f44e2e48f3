"""The worker's HTTP query API (JSON): counts, alerts, health.

- ``GET /counts`` -> ``{region: {event type: {"1h": n, "24h": n, "7d": n, "total": n}}}``
- ``GET /counts/{region}`` -> the same for one region (empty object if it has no events);
  both take ``?at=<ISO 8601 time>`` for windows ending then (``total``: all counted so far)
- ``GET /stats`` -> counts plus late events and account sums, and worker totals
- ``GET /alerts`` -> the alerts firing now
- ``GET /health`` -> ``{"status": "ok" | "recovering", ...}``
Each series' windows end at its own partition's stream time (the latest event time seen there),
the "now" the alert rules read it at; ``stream_time`` is the latest of those.
Every route but ``/health`` needs ``Authorization: Bearer <token>`` (:mod:`disruptfeed.auth`).
"""

from __future__ import annotations

__all__ = ["register_views"]

import dataclasses
import datetime as dt
import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson

from disruptfeed.auth import authorized, unauthorized_body

if TYPE_CHECKING:
    from streams.app import WorkerState


def _json(web: Any, payload: Any, status: int = 200) -> Any:
    return web.bytes(
        orjson.dumps(payload, option=orjson.OPT_SORT_KEYS),
        content_type="application/json",
        status=status,
    )


def _stream_time(state: WorkerState) -> str | None:
    now = state.processor.store.now_ms
    return dt.datetime.fromtimestamp(now / 1000, dt.UTC).isoformat() if now else None


View = Callable[..., Awaitable[Any]]


def _guarded(tokens: tuple[str, ...]) -> Callable[[View], View]:
    """Wrap a view so that it answers 401 without one of ``tokens``."""

    def wrap(view: View) -> View:
        @functools.wraps(view)
        async def guarded(web: Any, req: Any, **kwargs: Any) -> Any:
            if not authorized(req.headers.get("Authorization"), tokens):
                return _json(web, unauthorized_body(), status=401)
            return await view(web, req, **kwargs)

        return guarded

    return wrap


def _counts(web: Any, req: Any, state: WorkerState, region: str | None) -> Any:
    """Counts at stream time, or with ``?at=<ISO 8601 time>`` with windows ending then."""
    at = req.query.get("at")
    if at is None:
        return _json(web, state.processor.store.snapshot(region))
    try:
        when = dt.datetime.fromisoformat(at)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        message = f"at={at!r} is not an ISO 8601 time with a timezone, e.g. 2026-10-01T00:00Z"
        return _json(web, {"error": message}, status=400)
    at_ms = int(when.timestamp() * 1000)
    return _json(web, state.processor.store.snapshot(region, now_ms=at_ms))


def register_views(app: Any, state: WorkerState) -> None:
    """Add the query views to a Faust app."""
    guard = _guarded(state.settings.bearer_tokens())

    @app.page("/counts")  # type: ignore[untyped-decorator]
    @guard
    async def counts(web: Any, req: Any) -> Any:
        return _counts(web, req, state, None)

    @app.page("/counts/{region}")  # type: ignore[untyped-decorator]
    @guard
    async def region_counts(web: Any, req: Any, region: str) -> Any:
        return _counts(web, req, state, region)

    @app.page("/stats")  # type: ignore[untyped-decorator]
    @guard
    async def stats(web: Any, req: Any) -> Any:
        return _json(
            web,
            {
                "stream_time": _stream_time(state),
                "worker": dataclasses.asdict(state.processor.stats),
                "counts": state.processor.store.detail(),
            },
        )

    @app.page("/alerts")  # type: ignore[untyped-decorator]
    @guard
    async def alerts(web: Any, req: Any) -> Any:
        active = [a.model_dump(mode="json") for a in state.processor.engine.active()]
        return _json(web, {"stream_time": _stream_time(state), "alerts": active})

    @app.page("/health")  # type: ignore[untyped-decorator]
    async def health(web: Any, req: Any) -> Any:
        status = "ok" if state.recovered else "recovering"
        return _json(
            web,
            {
                "status": status,
                "stream_time": _stream_time(state),
                "restored_events": state.restored_events,
                **dataclasses.asdict(state.processor.stats),
            },
            status=200 if state.recovered else 503,
        )
