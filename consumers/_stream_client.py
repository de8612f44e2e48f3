"""A client for the live streams: Server-Sent Events parsed as the WHATWG spec says.

    async for message in follow_sse(url, token=token, params={"region": "RU"}, reconnect=True):
        handle(message.event, message.data)

With ``reconnect``, a dropped connection is reopened with the last id seen (``Last-Event-ID``),
after the server's ``retry:`` delay, so the client sees every message once.
"""

from __future__ import annotations

__all__ = ["SSEMessage", "follow_sse"]

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass

import httpx

from disruptfeed.errors import BrokerError, ConfigurationError


@dataclass(frozen=True, slots=True)
class SSEMessage:
    """One dispatched message: its id (the stream position), event name and data."""

    id: str | None
    event: str
    data: str


async def follow_sse(
    url: str,
    *,
    token: str | None = None,
    params: Mapping[str, str | Sequence[str]] | None = None,
    last_event_id: str | None = None,
    reconnect: bool = False,
    connect_timeout: float = 30.0,
) -> AsyncGenerator[SSEMessage, None]:
    """Yield the messages of an SSE stream.

    Raises:
        ConfigurationError: the server refused the request (4xx), with its reason.
        BrokerError: the server cannot be reached (and ``reconnect`` is off).
    """
    headers = {"Accept": "text/event-stream"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    # A tuple, since tuples are covariant: httpx wants pairs of str and wider value types.
    query = tuple(
        (k, v) for k, vs in (params or {}).items() for v in ([vs] if isinstance(vs, str) else vs)
    )
    retry_s = 2.0
    # The read timeout is generous: heartbeats arrive every 15 s by default.
    limits = httpx.Timeout(connect_timeout, read=max(connect_timeout, 60.0))
    async with httpx.AsyncClient(timeout=limits) as client:
        while True:
            request_headers = dict(headers)
            if last_event_id:
                request_headers["Last-Event-ID"] = last_event_id
            try:
                async with client.stream(
                    "GET", url, params=httpx.QueryParams(query), headers=request_headers
                ) as r:
                    if r.status_code >= 400:
                        await r.aread()
                        raise ConfigurationError(_refusal(r))
                    async for message, retry in _parse(r.aiter_lines()):
                        if retry is not None:
                            retry_s = retry
                            continue
                        assert message is not None
                        if message.id is not None:
                            last_event_id = message.id
                        yield message
            except (httpx.TransportError, httpx.RemoteProtocolError) as exc:
                if not reconnect:
                    raise BrokerError(f"the stream at {url} failed: {exc}") from exc
            if not reconnect:
                return
            await asyncio.sleep(retry_s)  # the server's retry: delay before reconnecting


def _refusal(response: httpx.Response) -> str:
    try:
        reason = str(response.json().get("error", response.text))
    except ValueError:
        reason = response.text[:200]
    if response.status_code == 401:
        return "unauthorized: pass --token or set DISRUPTFEED_API_TOKEN"
    return f"{response.url} answered {response.status_code}: {reason}"


async def _parse(
    lines: AsyncIterator[str],
) -> AsyncIterator[tuple[SSEMessage | None, float | None]]:
    """(message, None) per dispatched message, (None, seconds) per ``retry:`` field."""
    event, msg_id = "", None
    data: list[str] = []
    async for raw in lines:
        line = raw.rstrip("\r")
        if not line:
            if data:
                yield SSEMessage(msg_id, event or "message", "\n".join(data)), None
            event, data = "", []
            continue
        if line.startswith(":"):
            continue  # a comment: heartbeats
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id" and "\0" not in value:
            msg_id = value
        elif name == "retry" and value.isdigit():
            yield None, int(value) / 1000
