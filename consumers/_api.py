"""The dispatcher's HTTP API: subscriptions, live streams, health. JSON in and out.

Every route but ``/health`` and ``/ready`` needs ``Authorization: Bearer <token>``, and every
request is held to the HTTP limits (body, query string): :mod:`disruptfeed._http`, in front of
every path.

- ``GET /subscriptions``, ``POST /subscriptions`` (``{"url", "kind", "regions", "rules",
  "states", "min_severity", "description", "from_beginning"}``; the answer carries the signing
  secret, the only time it is shown)
- ``GET|DELETE /subscriptions/{id}``; ``POST /subscriptions/{id}/pause|resume|rotate-secret``
- ``GET /subscriptions/{id}/deliveries?limit=N``: the last delivery attempts
- ``GET /stream/alerts``, ``GET /stream/events``: Server-Sent Events (:mod:`consumers._streams`)
- ``GET /health``: liveness, open, for probes: 200 whenever the process answers
- ``GET /ready``: readiness, open: 503 with a JSON reason until it is consuming with its lag
  under ``DISRUPTFEED_READY_MAX_LAG`` (:mod:`consumers._metrics`)
- ``GET /metrics``: Prometheus text format (behind the token like the rest)
"""

from __future__ import annotations

__all__ = ["build_app", "serve"]

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Final

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from consumers._dispatcher import Dispatcher
from consumers._metrics import dispatcher_collectors, readiness
from consumers._registry import SubscriptionAdmin
from consumers._streams import add_stream_routes
from disruptfeed._http import application_options, cluster_unavailable
from disruptfeed._metrics import metrics_body, new_registry
from disruptfeed.auth import check_bind
from disruptfeed.errors import (
    BrokerError,
    ConfigurationError,
    ConnectionSecurityError,
    EndpointRefusedError,
    NotFoundError,
)
from disruptfeed.settings import Settings
from schemas import AlertStatus, Region, Severity
from schemas._subscriptions import AlertFilter, SubscriptionKind, SubscriptionRecord, http_url

log = logging.getLogger(__name__)

_DISPATCHER: Final = web.AppKey("dispatcher", Dispatcher)
_SETTINGS: Final = web.AppKey("api-settings", Settings)
_REGISTRY: Final = web.AppKey("metrics-registry", CollectorRegistry)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _NewSubscription(BaseModel):
    """The body of ``POST /subscriptions``: validated whole, so every problem is reported."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: Annotated[str, AfterValidator(http_url)]
    kind: SubscriptionKind = "webhook"
    regions: tuple[Region, ...] = ()
    rules: tuple[str, ...] = ()
    states: tuple[AlertStatus, ...] = ()
    min_severity: Severity = "info"
    description: str = Field(default="", max_length=500)
    from_beginning: bool = False


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(payload, option=orjson.OPT_SORT_KEYS),
        status=status,
        content_type="application/json",
    )


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return _json({"error": message, **extra}, status)


def _failure(exc: Exception) -> web.Response | None:
    """The JSON answer for an error a handler raised about the request; None: not ours."""
    if isinstance(exc, ValidationError):
        problems = [
            {"field": ".".join(str(p) for p in e["loc"]), "reason": e["msg"]}
            for e in exc.errors(include_url=False)
        ]
        return _error(400, "invalid request", problems=problems)
    if isinstance(exc, BrokerError | ConnectionSecurityError):
        return cluster_unavailable(exc)
    if isinstance(exc, NotFoundError):
        return _error(404, str(exc))
    if isinstance(exc, EndpointRefusedError):
        return _error(422, str(exc), field="url")
    if isinstance(exc, ConfigurationError):
        return _error(400, str(exc))
    return None


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Our handlers' errors about a request, as JSON; HTTP errors are the guard's to answer."""
    try:
        return await handler(request)
    except (ValidationError, ConfigurationError, BrokerError) as exc:
        answer = _failure(exc)
        if answer is None:
            raise
        return answer


def _admin(request: web.Request) -> SubscriptionAdmin:
    admin = request.app[_DISPATCHER].admin
    if admin is None:
        raise web.HTTPServiceUnavailable(reason="the dispatcher is still starting")
    return admin


def _view(record: SubscriptionRecord, secret: str | None = None) -> dict[str, Any]:
    data = record.public()
    if secret is not None:
        data["secret"] = secret
    return data


async def _health(request: web.Request) -> web.Response:
    # Liveness: answering proves the process and its event loop are up; the body says whether
    # it has started. Readiness (consuming, lag under the bound) is /ready's.
    return _json(request.app[_DISPATCHER].health())


async def _ready(request: web.Request) -> web.Response:
    ok, answer = readiness(request.app[_DISPATCHER])
    return _json(answer, 200 if ok else 503)


async def _metrics(request: web.Request) -> web.Response:
    body, content_type = metrics_body(request.app[_REGISTRY])
    return web.Response(body=body, headers={"Content-Type": content_type})


async def _list(request: web.Request) -> web.Response:
    return _json({"subscriptions": [_view(s) for s in _admin(request).all()]})


async def _create(request: web.Request) -> web.Response:
    try:
        data = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        return _error(400, f"the body is not JSON: {exc}")
    limit = request.app[_SETTINGS].http_max_filter_values
    for name in ("regions", "rules", "states"):
        given = data.get(name) if isinstance(data, dict) else None
        if isinstance(given, list) and len(given) > limit:
            message = (
                f"{name}: {len(given)} values; a filter lists at most {limit} "
                "(DISRUPTFEED_HTTP_MAX_FILTER_VALUES)"
            )
            return _error(400, message, field=name, limit=limit)
    spec = _NewSubscription.model_validate(data)
    filt = AlertFilter(
        regions=spec.regions, rules=spec.rules, states=spec.states, min_severity=spec.min_severity
    )
    record, secret = await _admin(request).create(
        spec.url,
        kind=spec.kind,
        filter=filt,
        description=spec.description,
        from_beginning=spec.from_beginning,
    )
    return _json({"subscription": _view(record, secret)}, 201)


async def _show(request: web.Request) -> web.Response:
    return _json({"subscription": _view(_admin(request).get(request.match_info["id"]))})


async def _delete(request: web.Request) -> web.Response:
    await _admin(request).delete(request.match_info["id"])
    return web.Response(status=204)


async def _action(request: web.Request) -> web.Response:
    admin, sub_id, action = _admin(request), request.match_info["id"], request.match_info["action"]
    if action == "rotate-secret":
        record, secret = await admin.rotate_secret(sub_id)
        return _json({"subscription": _view(record, secret)})
    state = {"pause": "paused", "resume": "active"}.get(action)
    if state is None:
        return _error(404, f"no action {action!r}: use pause, resume or rotate-secret")
    record = await admin.set_state(sub_id, "paused" if state == "paused" else "active")
    return _json({"subscription": _view(record)})


async def _deliveries(request: web.Request) -> web.Response:
    raw = request.query.get("limit", "20")
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 1_000:  # "²".isdigit()
        return _error(400, "limit must be a whole number from 1 to 1000", field="limit")
    attempts = await _admin(request).deliveries(request.match_info["id"], int(raw))
    return _json({"deliveries": [a.model_dump(mode="json") for a in attempts]})


def build_app(settings: Settings, dispatcher: Dispatcher) -> web.Application:
    """The dispatcher's aiohttp application (the guard's token check and limits included)."""
    options = application_options(settings, settings.bearer_tokens())
    options["middlewares"] = [*options["middlewares"], _errors]
    app = web.Application(**options)
    app[_DISPATCHER] = dispatcher
    app[_SETTINGS] = settings
    app[_REGISTRY] = new_registry(dispatcher_collectors(dispatcher))
    app.router.add_get("/health", _health)
    app.router.add_get("/ready", _ready)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/subscriptions", _list)
    app.router.add_post("/subscriptions", _create)
    app.router.add_get("/subscriptions/{id}", _show)
    app.router.add_delete("/subscriptions/{id}", _delete)
    app.router.add_post("/subscriptions/{id}/{action}", _action)
    app.router.add_get("/subscriptions/{id}/deliveries", _deliveries)
    add_stream_routes(app, settings)
    return app


async def serve(settings: Settings, *, port: int | None = None) -> None:
    """Run a dispatcher and its HTTP API until SIGTERM/SIGINT, then stop cleanly.

    Raises:
        ConfigurationError: a non-loopback DISRUPTFEED_DISPATCHER_HOST without
            DISRUPTFEED_API_TOKEN (:func:`disruptfeed.auth.check_bind`), before anything starts.
    """
    check_bind(settings.dispatcher_host, settings, "DISRUPTFEED_DISPATCHER_HOST")
    dispatcher = Dispatcher(settings)
    runner = web.AppRunner(build_app(settings, dispatcher), access_log=None)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await dispatcher.start()
        site = web.TCPSite(runner, settings.dispatcher_host, port or settings.dispatcher_port)
        await site.start()
        log.info(
            "dispatcher serving http://%s:%d",
            settings.dispatcher_host,
            port or settings.dispatcher_port,
        )
        task = asyncio.create_task(dispatcher.run(), name="dispatcher")
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        task.cancel()
        stopper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if task in done and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
    finally:
        await runner.cleanup()
        await dispatcher.stop()
