"""Live streams over Server-Sent Events: ``/stream/alerts`` and ``/stream/events``.

Each connection reads the topics itself (its own consumer, no group, committed data only), so a
client starts wherever it asks and nothing it does touches anyone else's position.

Where a stream starts: after the message whose id the client sends back (``Last-Event-ID``, or
``?last_event_id=`` since browsers' EventSource cannot set headers on the first connection), at
``?since=<ISO 8601 time>``, or at the current end (live only).

Message ids are the stream's position *after* that message: ``v1.`` and, for every partition of
every topic the stream reads, ``<topic index>-<partition>-<next offset>``, joined by ``.``
(topic index 0 for the alerts topic; 0, 1, 2 for account-disrupted, network-identified and
report-released). Records that the filter drops still advance it, so resuming from any id gives no
gap and no duplicate. An id for another topic layout is refused with a 400.

A client that falls more than ``DISRUPTFEED_SSE_BUFFER`` messages behind is sent a final
``event: error`` with the id to resume from, and dropped: nothing is buffered without bound.
At most ``DISRUPTFEED_HTTP_MAX_STREAMS_PER_TOKEN`` streams are open at once per API token (each
holds a Kafka consumer); one more is answered 429 before anything is started for it. A filter
lists at most ``DISRUPTFEED_HTTP_MAX_FILTER_VALUES`` values per parameter (400).

The worker serves the same alerts stream at ``/alerts/stream``, for its dashboard
(:func:`add_alert_stream_route`). When a server shuts down, its open streams end within a
second (``on_shutdown``) instead of holding the shutdown for aiohttp's timeout.
"""

from __future__ import annotations

__all__ = ["add_alert_stream_route", "add_stream_routes", "decode_position", "encode_position"]

import asyncio
import contextlib
import datetime as dt
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any, Final

import orjson
from aiohttp import web
from pydantic import ValidationError

from consumers._kafka import partitions_of, start_consumer
from disruptfeed._aiokafka import stop_client
from disruptfeed._http import TOKEN_INDEX, cluster_unavailable
from disruptfeed.errors import (
    BrokerNotRunningError,
    ConfigurationError,
    ConnectionSecurityError,
    InvalidEventError,
)
from disruptfeed.settings import Settings
from disruptfeed.topics import ALERTS, event_types_by_topic
from schemas import SEVERITY_RANK, codec, decode_alert
from schemas._subscriptions import AlertFilter, EventFilter

log = logging.getLogger(__name__)

Position = dict[tuple[int, int], int]
"""(topic index, partition) -> the next offset to read."""

_SETTINGS: Final = web.AppKey("stream-settings", Settings)
_OPEN: Final = web.AppKey("open-streams", Counter[int | None])
"""Live streams open now, per matched token index (None: an app without the guard, in tests)."""
_CLOSING: Final = web.AppKey("streams-closing", asyncio.Event)
"""Set when the server shuts down: every open stream ends."""
_WRITE_TIMEOUT: Final = 10.0
"""A client whose socket takes no bytes for this long is dropped (its buffer is full)."""
_LIVENESS_S: Final = 1.0


class _BadRequest(Exception):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def encode_position(position: Position) -> str:
    """The SSE id of a stream position (see the module docstring)."""
    parts = (f"{t}-{p}-{o}" for (t, p), o in sorted(position.items()))
    return "v1." + ".".join(parts)


def decode_position(text: str, layout: set[tuple[int, int]]) -> Position:
    """Parse an SSE id for a stream whose partitions are ``layout``.

    Raises:
        ValueError: malformed, or made for another set of topics or partitions.
    """
    version, _, rest = text.strip().partition(".")
    if version != "v1" or not rest:
        raise ValueError("not an id this server gave out (they start with 'v1.')")
    position: Position = {}
    for item in rest.split("."):
        fields = item.split("-")
        if len(fields) != 3 or not all(f.isascii() and f.isdigit() for f in fields):
            raise ValueError(f"malformed part {item[:40]!r}")
        t, p, o = (int(f) for f in fields)
        position[(t, p)] = o
    if set(position) != layout:
        raise ValueError(
            "the id is for another topic layout (partitions changed?); reconnect without it, "
            "or with ?since=<time>"
        )
    return position


def _values(request: web.Request, name: str) -> list[str]:
    limit = request.app[_SETTINGS].http_max_filter_values
    values = [v.strip() for raw in request.query.getall(name, []) for v in raw.split(",")]
    values = [v for v in values if v]
    if len(values) > limit:
        raise _BadRequest(
            name,
            f"{name}: {len(values)} values; a filter lists at most {limit} "
            "(DISRUPTFEED_HTTP_MAX_FILTER_VALUES)",
        )
    return values


def _filter(request: web.Request, kind: str) -> AlertFilter | EventFilter:
    try:
        if kind == "alerts":
            severity = request.query.get("severity", "info")
            if severity not in SEVERITY_RANK:
                raise _BadRequest("severity", "severity must be info, warning or critical")
            return AlertFilter.model_validate(
                {
                    "regions": _values(request, "region"),
                    "rules": _values(request, "rule"),
                    "states": _values(request, "state"),
                    "min_severity": severity,
                }
            )
        return EventFilter.model_validate(
            {"regions": _values(request, "region"), "types": _values(request, "type")}
        )
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        field = {"regions": "region", "rules": "rule", "states": "state", "types": "type"}
        name = field.get(str(err["loc"][0]), str(err["loc"][0]))
        raise _BadRequest(name, f"{name}: {err['msg']}") from None


def _since(request: web.Request) -> dt.datetime | None:
    raw = request.query.get("since")
    if raw is None:
        return None
    try:
        when = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise _BadRequest(
            "since", "since must be an ISO 8601 time, e.g. 2026-12-01T00:00Z"
        ) from None
    if when.tzinfo is None:
        raise _BadRequest("since", "since needs a timezone, e.g. 2026-12-01T00:00:00+00:00")
    return when


def _error(status: int, field: str, reason: str) -> web.Response:
    body = orjson.dumps({"error": reason, "field": field})
    return web.Response(body=body, status=status, content_type="application/json")


Matcher = Callable[[Any], str | None]
"""A record -> the SSE event name to send it as, or None to skip it."""


def _matcher(kind: str, filt: AlertFilter | EventFilter) -> Matcher:
    if kind == "alerts":
        assert isinstance(filt, AlertFilter)

        def alerts(record: Any) -> str | None:
            try:
                return "alert" if filt.matches(decode_alert(record.value or b"")) else None
            except ValidationError:
                log.warning("skipping an invalid alert at offset %d", record.offset)
                return None

        return alerts
    assert isinstance(filt, EventFilter)

    def events(record: Any) -> str | None:
        try:
            event = codec.decode_record(record.value, record.headers or ())
        except InvalidEventError as exc:
            log.warning("skipping an invalid event at offset %d: %s", record.offset, exc)
            return None
        return event.type if filt.matches(event.actor.region, event.type) else None

    return events


async def _position(
    consumer: Any, parts: dict[tuple[int, int], Any], request: web.Request
) -> Position:
    last = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    since = _since(request)
    if last:
        try:
            return decode_position(last, set(parts))
        except ValueError as exc:
            raise _BadRequest("Last-Event-ID", str(exc)) from None
    tps = list(parts.values())
    ends = await consumer.end_offsets(tps)
    if since is None:
        return {key: ends[tp] for key, tp in parts.items()}
    # Kafka's timestamps start at 1970 (a negative one is refused): earlier is from the start.
    since_ms = max(0, int(since.timestamp() * 1000))
    found = await consumer.offsets_for_times(dict.fromkeys(tps, since_ms))
    return {
        key: (found[tp].offset if found.get(tp) is not None else ends[tp])
        for key, tp in parts.items()
    }


async def _stream(request: web.Request, kind: str) -> web.StreamResponse:
    settings = request.app[_SETTINGS]
    try:
        matcher = _matcher(kind, _filter(request, kind))
        _since(request)
    except _BadRequest as exc:
        return _error(400, exc.field, exc.reason)
    token = request.get(TOKEN_INDEX)
    open_streams = request.app[_OPEN]
    limit = settings.http_max_streams_per_token
    if open_streams[token] >= limit:
        reason = (
            f"{limit} live streams are open with this token already; close one first "
            "(DISRUPTFEED_HTTP_MAX_STREAMS_PER_TOKEN)"
        )
        response = _error(429, "", reason)
        response.headers["Retry-After"] = "5"
        return response
    open_streams[token] += 1  # counted before the first await: no race past the limit
    try:
        return await _open(request, settings, kind, matcher)
    finally:
        open_streams[token] -= 1


async def _open(
    request: web.Request, settings: Settings, kind: str, matcher: Matcher
) -> web.StreamResponse:
    from aiokafka import TopicPartition

    topics = [settings.topic(ALERTS)] if kind == "alerts" else list(event_types_by_topic(settings))
    try:
        consumer = await start_consumer(settings)
    except (BrokerNotRunningError, ConnectionSecurityError) as exc:
        return cluster_unavailable(exc)
    try:
        parts: dict[tuple[int, int], Any] = {}
        try:
            for index, topic in enumerate(topics):
                for p in await partitions_of(consumer, topic, settings.bootstrap):
                    parts[(index, p)] = TopicPartition(topic, p)
        except ConfigurationError as exc:
            return _error(503, "", str(exc))
        try:
            position = await _position(consumer, parts, request)
        except _BadRequest as exc:
            return _error(400, exc.field, exc.reason)
        consumer.assign(list(parts.values()))
        for key, tp in parts.items():
            consumer.seek(tp, position[key])
        index_of = {tp: key for key, tp in parts.items()}
        return await _serve(request, settings, consumer, index_of, position, matcher)
    finally:
        await stop_client(consumer)  # a handler is cancelled when its client goes away


async def _serve(
    request: web.Request,
    settings: Settings,
    consumer: Any,
    index_of: dict[Any, tuple[int, int]],
    position: Position,
    matcher: Matcher,
) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # proxies must not hold events back
        }
    )
    response.force_close()  # an ended stream ends its connection: no keep-alive after it
    await response.prepare(request)
    await response.write(b"retry: 2000\n: stream open\n\n")
    queue: asyncio.Queue[bytes] = asyncio.Queue(settings.sse_buffer)
    overflow = asyncio.Event()
    delivered = [encode_position(position)]  # the id of the last message handed to the client

    async def read() -> None:
        while True:
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                for record in records:
                    position[index_of[tp]] = record.offset + 1
                    event = matcher(record)
                    if event is None:
                        continue
                    data = (record.value or b"").replace(b"\n", b" ")
                    frame = f"id: {encode_position(position)}\nevent: {event}\ndata: ".encode()
                    try:
                        queue.put_nowait(frame + data + b"\n\n")
                    except asyncio.QueueFull:
                        overflow.set()
                        return

    reader = asyncio.create_task(read())
    try:
        if await _write_loop(request, response, settings, queue, overflow, reader, delivered):
            await _goodbye(response, settings, delivered)
    except (ConnectionResetError, asyncio.CancelledError):
        log.info("a live-stream client went away")
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
    return response


async def _write_loop(
    request: web.Request,
    response: web.StreamResponse,
    settings: Settings,
    queue: asyncio.Queue[bytes],
    overflow: asyncio.Event,
    reader: asyncio.Task[None],
    delivered: list[str],
) -> bool:
    """Write messages and heartbeats; True when the client fell behind and must be told."""
    heartbeat = settings.sse_heartbeat_seconds
    loop = asyncio.get_running_loop()
    quiet_since = loop.time()
    while True:
        if overflow.is_set() and queue.empty():
            return True
        # Woken at least once a second: a client that hung up is noticed then, not at the next
        # heartbeat (aiohttp does not cancel a handler whose client went away).
        transport = request.transport
        if transport is None or transport.is_closing() or request.app[_CLOSING].is_set():
            return False
        try:
            frame = await asyncio.wait_for(queue.get(), min(heartbeat, _LIVENESS_S))
        except TimeoutError:
            if reader.done() and not overflow.is_set():
                reader.result()  # the reader failed: say so in the log and end the stream
                return False
            if loop.time() - quiet_since < heartbeat:
                continue
            frame = b": heartbeat\n\n"
        else:
            delivered[0] = frame.split(b"\n", 1)[0].removeprefix(b"id: ").decode()
        try:
            await asyncio.wait_for(response.write(frame), _WRITE_TIMEOUT)
        except TimeoutError:
            return True
        quiet_since = loop.time()
        if overflow.is_set():
            return True


async def _goodbye(response: web.StreamResponse, settings: Settings, delivered: list[str]) -> None:
    last = delivered[0]
    goodbye = orjson.dumps(
        {
            "error": "client too slow",
            "detail": f"more than {settings.sse_buffer} messages behind; reconnect with "
            "Last-Event-ID set to last_event_id to resume with no gap",
            "last_event_id": last,
        }
    )
    # Queued behind what the client has not read yet; closing flushes it.
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        await asyncio.wait_for(response.write(b"event: error\ndata: " + goodbye + b"\n\n"), 1.0)
    log.warning("dropped a live-stream client more than %d messages behind", settings.sse_buffer)


async def _alerts(request: web.Request) -> web.StreamResponse:
    return await _stream(request, "alerts")


async def _events(request: web.Request) -> web.StreamResponse:
    return await _stream(request, "events")


def _install(app: web.Application, settings: Settings) -> None:
    if _SETTINGS in app:
        return
    app[_SETTINGS] = settings
    app[_OPEN] = Counter()
    closing = app[_CLOSING] = asyncio.Event()

    async def close_streams(_: web.Application) -> None:
        closing.set()

    app.on_shutdown.append(close_streams)


def add_stream_routes(app: web.Application, settings: Settings) -> None:
    """Serve ``GET /stream/alerts`` and ``GET /stream/events`` (no auth: the app adds it)."""
    _install(app, settings)
    app.router.add_get("/stream/alerts", _alerts)
    app.router.add_get("/stream/events", _events)


def add_alert_stream_route(app: web.Application, settings: Settings, path: str) -> None:
    """Serve the alerts stream (``/stream/alerts`` above) at ``path`` too: the worker's."""
    _install(app, settings)
    app.router.add_get(path, _alerts)
