"""The worker's HTTP query API (JSON): counts, alerts, health.

- ``GET /counts`` -> ``{region: {event type: {"1h": n, "24h": n, "7d": n, "total": n}}}``
- ``GET /counts/{region}`` -> the same for one region (empty object if it has no events);
  both take ``?at=<ISO 8601 time>`` for windows ending then (``total``: all counted so far)
- ``GET /stats`` -> counts plus late events and account sums, and worker totals
- ``GET /alerts`` -> the alerts firing now
- ``GET /health`` -> liveness: 200 whenever the process and its event loop answer, with
  ``{"status": "ok" | "recovering", ...}`` (``/ready`` is the readiness probe: streams._metrics)
``/counts`` and ``/alerts`` answer for every region, whichever worker is asked: the other
workers' parts are gathered (:mod:`streams._peers`; header ``X-Disruptfeed-Workers``), or
``?scope=local`` for this worker's partitions only.
``GET /`` (the dashboard) and ``GET /alerts/stream`` (alert transitions, SSE) are
:mod:`streams._dashboard`'s; a browser there sends the dashboard's session cookie, which the
guard takes in place of the bearer header on GET and HEAD.
Each series' windows end at its own partition's stream time (the latest event time seen there),
the "now" the alert rules read it at; ``stream_time`` is the latest of those.
Every route but ``/health`` and ``/ready`` needs ``Authorization: Bearer <token>``: the worker's
aiohttp application checks it, and the request limits, for every path before any view runs
(:mod:`disruptfeed._http`, installed by :func:`streams.app.create_app`).
"""

from __future__ import annotations

__all__ = ["register_views"]

import datetime as dt
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from disruptfeed._http import TOKEN_INDEX
from streams._peers import gather

if TYPE_CHECKING:
    from streams.app import WorkerState


def _json(web: Any, payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Any:
    return web.bytes(
        orjson.dumps(payload, option=orjson.OPT_SORT_KEYS),
        content_type="application/json",
        status=status,
        headers=headers,
    )


WORKERS_HEADER = "X-Disruptfeed-Workers"
"""The workers whose parts an answer holds, this one first."""


def _peer_authorization(req: Any, state: WorkerState) -> str | None:
    """What to send the peers: the caller's header, or the token its session cookie proved."""
    header: str | None = req.headers.get("Authorization")
    index = req.get(TOKEN_INDEX)
    if header is None and index is not None:
        tokens = state.settings.bearer_tokens(create=False)
        if index < len(tokens):
            return f"Bearer {tokens[index]}"
    return header


async def _everywhere(
    web: Any, req: Any, app: Any, state: WorkerState, path: str, local: Any
) -> tuple[Any, Any]:
    """(parts, None) from every worker, or (None, an error response naming who did not answer)."""
    if req.query.get("scope") == "local":
        return [local], None
    # The first of a repeated parameter, as this worker read it (req.query.get): the peers must
    # answer the same question.
    query = {k: req.query[k] for k in req.query if k != "scope"}
    got = await gather(app, path, query, _peer_authorization(req, state), local)
    if got.missing:
        who = "; ".join(f"{url}: {why}" for url, why in sorted(got.missing.items()))
        message = (
            f"worker(s) owning other partitions did not answer ({who}); their regions are "
            "unknown, so nothing is shown. Ask again once the group has rebalanced, or ask "
            "with ?scope=local for this worker's partitions only"
        )
        return None, _json(web, {"error": message, "workers": got.workers}, status=503)
    return got.parts, {WORKERS_HEADER: ", ".join(got.workers)}


def _stream_time(state: WorkerState) -> str | None:
    now = state.processor.store.now_ms
    return dt.datetime.fromtimestamp(now / 1000, dt.UTC).isoformat() if now else None


def _local_counts(web: Any, req: Any, state: WorkerState, region: str | None) -> Any:
    """This worker's counts at stream time, or with ``?at=<ISO 8601 time>`` ending then."""
    at = req.query.get("at")
    if at is None:
        return state.processor.store.snapshot(region)
    try:
        when = dt.datetime.fromisoformat(at)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        message = f"at={at!r} is not an ISO 8601 time with a timezone, e.g. 2026-10-01T00:00Z"
        return _json(web, {"error": message}, status=400)
    at_ms = int(when.timestamp() * 1000)
    return state.processor.store.snapshot(region, now_ms=at_ms)


async def _counts(web: Any, req: Any, app: Any, state: WorkerState, region: str | None) -> Any:
    """Counts for every region, gathered from every worker (see :mod:`streams._peers`)."""
    local = _local_counts(web, req, state, region)
    if not isinstance(local, dict):
        return local  # an error response
    path = "/counts" if region is None else f"/counts/{quote(region, safe='')}"
    parts, headers = await _everywhere(web, req, app, state, path, local)
    if parts is None:
        return headers
    merged: dict[str, Any] = {}
    for part in parts:
        merged.update(part)  # each region is on one partition, so on one worker
    return _json(web, merged, headers=headers)


def register_views(app: Any, state: WorkerState) -> None:
    """Add the query views to a Faust app."""

    @app.page("/counts")  # type: ignore[untyped-decorator]
    async def counts(web: Any, req: Any) -> Any:
        return await _counts(web, req, app, state, None)

    @app.page("/counts/{region}")  # type: ignore[untyped-decorator]
    async def region_counts(web: Any, req: Any, region: str) -> Any:
        return await _counts(web, req, app, state, region)

    @app.page("/stats")  # type: ignore[untyped-decorator]
    async def stats(web: Any, req: Any) -> Any:
        return _json(
            web,
            {
                "stream_time": _stream_time(state),
                "worker": state.processor.stats.totals(),
                "counts": state.processor.store.detail(),
            },
        )

    @app.page("/alerts")  # type: ignore[untyped-decorator]
    async def alerts(web: Any, req: Any) -> Any:
        active = [a.model_dump(mode="json") for a in state.processor.engine.active()]
        local = {"stream_time": _stream_time(state), "alerts": active}
        parts, headers = await _everywhere(web, req, app, state, "/alerts", local)
        if parts is None:
            return headers
        times = [p["stream_time"] for p in parts if p["stream_time"]]
        alerts = sorted((a for p in parts for a in p["alerts"]),
                        key=lambda a: (a["starts_at"], a["fingerprint"]))  # fmt: skip
        merged = {"stream_time": max(times, default=None), "alerts": alerts}
        return _json(web, merged, headers=headers)

    @app.page("/health")  # type: ignore[untyped-decorator]
    async def health(web: Any, req: Any) -> Any:
        # Liveness: answering at all proves the process and its event loop are up, so always
        # 200 (a probe must not restart a worker for restoring its tables); the body says whether
        # the state is recovered. Readiness, lag included, is /ready's (streams._metrics).
        status = "ok" if state.recovered else "recovering"
        return _json(
            web,
            {
                "status": status,
                "stream_time": _stream_time(state),
                "restored_events": state.restored_events,
                **state.processor.stats.totals(),
            },
        )
