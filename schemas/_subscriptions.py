"""Push subscriptions: the filter, the record kept in the subscriptions topic, delivery records.

A subscription names an endpoint (a webhook URL, or an Alertmanager's base URL) and the alerts it
wants. The subscriptions topic is compacted and keyed by subscription id, so its latest record per
key *is* the subscription (a tombstone deletes it); every dispatcher and the CLI read it from the
start. Webhook records carry their signing secrets: restrict the topic to the feed's own
principals (ACLs) on a shared cluster.
"""

from __future__ import annotations

__all__ = [
    "SUBSCRIPTION_ID_PATTERN",
    "AlertFilter",
    "DeliveryAttempt",
    "DeliveryOutcome",
    "EventFilter",
    "SubscriptionKind",
    "SubscriptionRecord",
    "SubscriptionState",
    "http_url",
]

import datetime as dt
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from schemas._alerts import SEVERITY_RANK, Alert, AlertStatus, Severity
from schemas._types import EventType, Region

SubscriptionKind = Literal["webhook", "alertmanager"]
SubscriptionState = Literal["active", "paused", "disabled"]
DeliveryOutcome = Literal["delivered", "retrying", "dead-lettered", "dropped"]

SUBSCRIPTION_ID_PATTERN: Final = r"^sub_[0-9a-f]{24}$"
_MAX_FILTER_VALUES: Final = 300


def http_url(value: str) -> str:
    """``value`` if it is an http(s) URL with a host and no credentials; else ValueError."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise ValueError("must not carry credentials; the signature authenticates deliveries")
    try:
        port = parts.port  # raises for a port that is not a number up to 65535
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError("must have no port or a port from 1 to 65535")
    return value


class AlertFilter(BaseModel):
    """Which alerts a subscriber wants; an empty list means "any"."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    regions: tuple[Region, ...] = Field(default=(), max_length=_MAX_FILTER_VALUES)
    rules: tuple[str, ...] = Field(default=(), max_length=_MAX_FILTER_VALUES)
    states: tuple[AlertStatus, ...] = ()
    min_severity: Severity = "info"

    def matches(self, alert: Alert) -> bool:
        """Whether ``alert`` passes every part of the filter."""
        return (
            (not self.regions or alert.region in self.regions)
            and (not self.rules or alert.rule in self.rules)
            and (not self.states or alert.status in self.states)
            and SEVERITY_RANK[alert.severity] >= SEVERITY_RANK[self.min_severity]
        )


class EventFilter(BaseModel):
    """Which raw events a live-stream client wants; an empty list means "any"."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    regions: tuple[Region, ...] = Field(default=(), max_length=_MAX_FILTER_VALUES)
    types: tuple[EventType, ...] = ()

    def matches(self, region: str, event_type: str) -> bool:
        """Whether an event of ``event_type`` about ``region`` passes."""
        return (not self.regions or region in self.regions) and (
            not self.types or event_type in self.types
        )


class SubscriptionRecord(BaseModel):
    """One subscription, as stored (latest value per id) in the compacted subscriptions topic."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1] = 1
    id: str = Field(pattern=SUBSCRIPTION_ID_PATTERN)
    kind: SubscriptionKind
    url: str = Field(min_length=8, max_length=2_048)
    description: str = Field(default="", max_length=500)
    filter: AlertFilter = AlertFilter()
    state: SubscriptionState = "active"
    state_reason: str | None = Field(default=None, description="Why it was paused or disabled.")
    secret: str | None = Field(
        default=None, pattern=r"^whsec_[A-Za-z0-9+/=]{32,}$", description="Webhooks only."
    )
    previous_secret: str | None = Field(default=None, pattern=r"^whsec_[A-Za-z0-9+/=]{32,}$")
    previous_secret_until: AwareDatetime | None = Field(
        default=None, description="Deliveries are signed with both secrets until then."
    )
    start_offsets: dict[int, int] = Field(
        default_factory=dict,
        description="Alerts-topic partition -> first offset this subscription gets; empty: all.",
    )
    created_at: AwareDatetime
    updated_at: AwareDatetime

    _url = field_validator("url")(http_url)

    def secrets(self, now: dt.datetime) -> list[str]:
        """The secrets to sign a delivery made at ``now`` with: current first."""
        keys = [self.secret] if self.secret else []
        until = self.previous_secret_until
        if self.previous_secret and until is not None and now < until:
            keys.append(self.previous_secret)
        return keys

    def public(self) -> dict[str, Any]:
        """The record as JSON data without its secrets: for listings, logs and the API."""
        data = self.model_dump(mode="json", exclude={"secret", "previous_secret"})
        data["start_offsets"] = {str(p): o for p, o in sorted(self.start_offsets.items())}
        return data


class DeliveryAttempt(BaseModel):
    """One attempt to deliver one alert to one subscription: a record of the delivery log."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    subscription_id: str
    alert_id: str
    webhook_id: str
    sequence: int = Field(ge=1)
    attempt: int = Field(ge=1)
    outcome: DeliveryOutcome
    status_code: int | None = None
    latency_ms: float | None = None
    error: str | None = None
    next_attempt_at: AwareDatetime | None = None
    at: AwareDatetime
