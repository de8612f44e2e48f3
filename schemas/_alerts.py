"""The alert wire model and its Kafka codec, shared by the worker, the clients and the dispatcher.

An alert is one message about one *episode*: a period during which a rule's condition held for one
set of labels (region and event type, plus a network or report id for the immediate rules). The
episode is named by its ``fingerprint``, stable across every message about it; each message has
its own ``alert_id``, derived from the fingerprint, the status, the episode's start and the repeat
number, so replaying the same history gives the same ids while a repeated ``firing`` is a new
message that receivers deduplicating by id still get.
"""

from __future__ import annotations

__all__ = [
    "ALERT_CE_SOURCE",
    "ALERT_NAMESPACE",
    "MAX_SAMPLES",
    "SEVERITY_RANK",
    "Alert",
    "AlertKind",
    "AlertStatus",
    "Severity",
    "alert_ce_type",
    "alert_headers",
    "alert_key",
    "decode_alert",
    "derive_alert_id",
    "encode_alert",
    "fingerprint",
    "from_ms",
    "to_ms",
]

import datetime as dt
import hashlib
from typing import Final, Literal, Self
from uuid import UUID, uuid5

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from schemas._codec import CONTENT_TYPE, codec

AlertKind = Literal["threshold", "surge", "new-network", "report"]
Severity = Literal["info", "warning", "critical"]
AlertStatus = Literal["firing", "resolved"]

SEVERITY_RANK: Final[dict[str, int]] = {"info": 0, "warning": 1, "critical": 2}
"""Severities in order, for "at least this severe" filters."""

ALERT_NAMESPACE: Final = UUID("be42e37c-ef0e-4438-bda3-544c2f3ba5a6")
"""Namespace of the uuid5 alert ids. Never change it: ids already published would not recur."""
ALERT_CE_SOURCE: Final = "urn:disruptfeed:worker"
MAX_SAMPLES: Final = 10
"""Most event ids an alert carries as examples."""

_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MS: Final = dt.timedelta(milliseconds=1)


def to_ms(when: dt.datetime) -> int:
    """Milliseconds since the epoch of an aware datetime (floored, so exact for whole ms)."""
    # Integer timedelta arithmetic: timestamp() goes through a float and can be off by one ms.
    return (when - _EPOCH) // _MS


def from_ms(ms: int) -> dt.datetime:
    """The UTC datetime of a millisecond timestamp."""
    return _EPOCH + dt.timedelta(milliseconds=ms)


def fingerprint(rule: str, labels: dict[str, str]) -> str:
    """The episode key: hex SHA-256 of the rule name and its sorted labels.

    Canonical JSON (compact, labels sorted by name) keeps the input unambiguous, whatever the
    names contain, and the same on every run and machine.
    """
    canonical = orjson.dumps([rule, sorted(labels.items())])
    return hashlib.sha256(canonical).hexdigest()


def derive_alert_id(
    fingerprint: str, status: AlertStatus, starts_at: dt.datetime, repeat: int = 0
) -> UUID:
    """The deterministic id of one alert message.

    ``uuid5(fingerprint:status:starts_at_ms)`` for an episode's first ``firing`` and its
    ``resolved`` (the ids of the first release, unchanged), with ``:repeat`` appended for the
    n-th repeat of a ``firing``.
    """
    name = f"{fingerprint}:{status}:{to_ms(starts_at)}"
    return uuid5(ALERT_NAMESPACE, f"{name}:{repeat}" if repeat else name)


class Alert(BaseModel):
    """One alert message: a rule's condition started, still holds, or ended for some labels."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    alert_id: UUID = Field(description="uuid5 of fingerprint, status, starts_at and repeat.")
    rule: str = Field(description="Name of the rule that raised it.")
    kind: AlertKind
    region: str = Field(description="Actor region the alert is about.")
    event_type: str = Field(description="Event type the alert is about.")
    severity: Severity
    status: AlertStatus
    repeat: int = Field(
        default=0, ge=0, description="0 for an episode's first message; n for its n-th repeat."
    )
    window: str | None = Field(default=None, description="Rolling window counted, e.g. '1h'.")
    value: int | None = Field(default=None, description="Events in the window at evaluation.")
    threshold: float | None = Field(
        default=None, description="The count required: N, or max(min_count, k x baseline)."
    )
    baseline: float | None = Field(
        default=None, description="Surge rules: average count per window over the baseline."
    )
    sample_event_ids: tuple[UUID, ...] = Field(default=(), max_length=MAX_SAMPLES)
    fingerprint: str = Field(pattern=r"^[0-9a-f]{64}$", description="Episode key; Kafka key.")
    starts_at: AwareDatetime = Field(description="Event time the episode started.")
    ends_at: AwareDatetime | None = Field(default=None, description="Set when resolved.")
    evaluated_at: AwareDatetime = Field(description="Stream time of the evaluation.")
    summary: str = Field(min_length=1, description="One human-readable sentence.")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.status == "resolved") != (self.ends_at is not None):
            raise ValueError("ends_at is set exactly when status is 'resolved'")
        if self.status == "resolved" and self.repeat:
            raise ValueError("a resolved alert is never a repeat")
        expected = derive_alert_id(self.fingerprint, self.status, self.starts_at, self.repeat)
        if self.alert_id != expected:
            raise ValueError(f"alert_id {self.alert_id} is not the derived id {expected}")
        return self

    @property
    def labels(self) -> dict[str, str]:
        """The labels that name the alert to routers such as Alertmanager."""
        return {
            "alertname": self.rule,
            "rule": self.rule,
            "region": self.region,
            "event_type": self.event_type,
            "severity": self.severity,
            "kind": self.kind,
        }


def alert_ce_type(status: AlertStatus, version: int = 1) -> str:
    """The CloudEvents ``type`` of an alert: ``io.disruptfeed.alert.firing.v1``."""
    return f"io.disruptfeed.alert.{status}.v{version}"


def encode_alert(alert: Alert) -> bytes:
    """The record value: the alert's JSON document (keys sorted, so bytes are reproducible)."""
    return codec.dumps(alert.model_dump(mode="python"))


def alert_key(alert: Alert) -> bytes:
    """The record key: the fingerprint, so one episode's messages stay in order on one partition."""
    return alert.fingerprint.encode()


def alert_headers(alert: Alert) -> list[tuple[str, bytes]]:
    """CloudEvents binary-mode headers for an alert record."""
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", str(alert.alert_id).encode()),
        ("ce_source", ALERT_CE_SOURCE.encode()),
        ("ce_type", alert_ce_type(alert.status).encode()),
        ("ce_time", alert.evaluated_at.isoformat().encode()),
        ("ce_subject", alert.region.encode()),
        ("content-type", CONTENT_TYPE.encode()),
    ]


def decode_alert(data: bytes | str) -> Alert:
    """Validate one alert JSON document.

    Raises:
        pydantic.ValidationError: not JSON, or not a consistent alert.
    """
    return Alert.model_validate_json(data)
