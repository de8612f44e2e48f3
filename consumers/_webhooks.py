"""One webhook or Alertmanager delivery attempt: the signed request, the endpoint guard, the result.

Webhooks follow the Standard Webhooks specification: the body is the same bytes on every attempt;
``webhook-id`` names the message (the same across retries, and for the same alert delivered to the
same subscription twice, so receivers deduplicate on it); ``webhook-timestamp`` is the attempt's
Unix time; ``webhook-signature`` is ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` for each
valid secret, space-separated while a rotated secret is still honoured. ``webhook-sequence`` counts
each subscription's deliveries from 1 with no gap.

Alertmanager subscriptions post to ``<url>/api/v2/alerts`` in Alertmanager's own format.
"""

from __future__ import annotations

__all__ = [
    "AttemptResult",
    "alertmanager_payload",
    "attempt_delivery",
    "check_endpoint",
    "new_secret",
    "parse_retry_after",
    "sign",
    "webhook_body",
    "webhook_id",
]

import asyncio
import base64
import datetime as dt
import email.utils
import hashlib
import hmac
import ipaddress
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit
from uuid import UUID, uuid5

import httpx
import orjson

from disruptfeed import __version__
from disruptfeed.errors import EndpointRefusedError
from schemas import Alert
from schemas._subscriptions import SubscriptionRecord

_WEBHOOK_NAMESPACE: Final = UUID("0f6c7f3e-4f0e-4d55-9a43-0c1d3f5b8e21")
_USER_AGENT: Final = f"disruptfeed/{__version__} (+standard-webhooks)"
_MAX_ERROR: Final = 300
"""Longest error text kept per attempt (response bodies can be anything)."""
_METADATA_HOSTS: Final = frozenset({"metadata.google.internal", "metadata"})


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def webhook_id(subscription_id: str, alert_id: UUID) -> str:
    """The ``webhook-id`` of an alert's delivery to a subscription: stable, so dedupable."""
    return "msg_" + uuid5(_WEBHOOK_NAMESPACE, f"{subscription_id}:{alert_id}").hex


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks ``v1`` signature of one attempt (without the ``v1,`` prefix)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def webhook_body(alert: Alert, subscription_id: str, sequence: int, created: dt.datetime) -> bytes:
    """The JSON body of a webhook delivery (sorted keys: the same bytes on every attempt)."""
    return orjson.dumps(
        {
            "type": f"alert.{alert.status}",
            "timestamp": created.isoformat(),
            "subscription_id": subscription_id,
            "sequence": sequence,
            "data": alert.model_dump(mode="json"),
        },
        option=orjson.OPT_SORT_KEYS,
    )


def alertmanager_payload(
    alert: Alert, now: dt.datetime, resend: float, generator_url: str | None = None
) -> dict[str, Any]:
    """One postable alert for Alertmanager's ``/api/v2/alerts``.

    A firing alert ends ``4 x resend`` seconds from now unless it is posted again (as Prometheus
    does), so an Alertmanager never times out an alert that still fires; a resolved one ends now,
    or at its own end if that is later than its start and not in the future.
    """
    ends = now + dt.timedelta(seconds=4 * resend) if alert.status == "firing" else now
    starts = min(alert.starts_at, now)
    postable: dict[str, Any] = {
        "labels": alert.labels,
        "annotations": {
            "summary": alert.summary,
            "alert_id": str(alert.alert_id),
            "fingerprint": alert.fingerprint,
            **({"value": str(alert.value)} if alert.value is not None else {}),
            **({"threshold": f"{alert.threshold:g}"} if alert.threshold is not None else {}),
            **({"window": alert.window} if alert.window else {}),
        },
        "startsAt": starts.isoformat(),
        "endsAt": max(ends, starts).isoformat(),
    }
    if generator_url:
        postable["generatorURL"] = generator_url
    return postable


def _refused(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return bool(
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


async def check_endpoint(url: str, *, allow_private: bool) -> None:
    """Refuse a URL whose host resolves to a private, loopback, link-local or metadata address.

    Run at creation and again before every attempt, since DNS answers can change.

    Raises:
        EndpointRefusedError: the host does not resolve, or one of its addresses is refused.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if allow_private:
        return
    if host.lower() in _METADATA_HOSTS or host.lower().endswith(".internal"):
        raise EndpointRefusedError(f"{host} is a cloud metadata or internal name")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port)
    except (OSError, UnicodeError) as exc:  # UnicodeError: a name IDNA cannot encode
        why = (exc.strerror if isinstance(exc, OSError) else None) or exc
        raise EndpointRefusedError(f"{host} does not resolve ({why})") from exc
    for info in infos:
        address = str(info[4][0]).split("%", 1)[0]
        if _refused(ipaddress.ip_address(address)):
            raise EndpointRefusedError(
                f"{host} resolves to {address}, a private, loopback, link-local or reserved "
                "address; set DISRUPTFEED_WEBHOOK_ALLOW_PRIVATE=true to allow such endpoints"
            )


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What one attempt gave: success, a status code, a delay the endpoint asked for, an error."""

    ok: bool
    status_code: int | None
    latency_ms: float
    error: str | None = None
    retry_after: float | None = None

    @property
    def gone(self) -> bool:
        """The endpoint answered 410 Gone: disable the subscription."""
        return self.status_code == 410


async def attempt_delivery(
    client: httpx.AsyncClient,
    sub: SubscriptionRecord,
    *,
    msg_id: str,
    sequence: int,
    body: bytes,
    seconds: float,
    allow_private: bool,
) -> AttemptResult:
    """Make one attempt; never raises for the endpoint's or the network's faults.

    Only a 2xx answer is a success: redirects are not followed (a 3xx is a failure), since a
    redirect could point a signed delivery anywhere.
    """
    started = time.perf_counter()

    def elapsed() -> float:
        return round((time.perf_counter() - started) * 1000, 3)

    try:
        await check_endpoint(sub.url, allow_private=allow_private)
    except EndpointRefusedError as exc:
        return AttemptResult(False, None, elapsed(), f"refused: {exc}")
    now = dt.datetime.now(dt.UTC)
    if sub.kind == "alertmanager":
        url = sub.url.rstrip("/") + "/api/v2/alerts"
        headers = {"content-type": "application/json", "user-agent": _USER_AGENT}
    else:
        url = sub.url
        stamp = int(now.timestamp())
        signatures = " ".join(f"v1,{sign(s, msg_id, stamp, body)}" for s in sub.secrets(now))
        headers = {
            "content-type": "application/json",
            "user-agent": _USER_AGENT,
            "webhook-id": msg_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": signatures,
            "webhook-sequence": str(sequence),
        }
    try:
        response = await asyncio.wait_for(
            client.post(url, content=body, headers=headers, timeout=seconds), seconds + 1
        )
    except (TimeoutError, httpx.TimeoutException):
        return AttemptResult(False, None, elapsed(), f"timed out after {seconds:g} s")
    except httpx.HTTPError as exc:
        return AttemptResult(False, None, elapsed(), f"{type(exc).__name__}: {exc}"[:_MAX_ERROR])
    latency = elapsed()
    if 200 <= response.status_code < 300:
        return AttemptResult(True, response.status_code, latency)
    text = response.text[:_MAX_ERROR] if response.content else ""
    return AttemptResult(
        False,
        response.status_code,
        latency,
        f"HTTP {response.status_code}{': ' + text if text else ''}",
        parse_retry_after(response.headers.get("retry-after")),
    )


def jittered(delay: float, jitter: float, rand: Sequence[float] | None = None) -> float:
    """``delay`` stretched by a random share of up to ``jitter`` (spreads retry storms)."""
    share = (rand[0] if rand else secrets.randbelow(1_000_000) / 1_000_000) * jitter
    return delay * (1 + share)
