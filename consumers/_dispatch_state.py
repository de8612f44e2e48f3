"""The dispatcher's durable state: pending deliveries, cursors, Alertmanager firing alerts.

It lives in the compacted dispatch-state topic, keyed so that the latest record per key is current:

- ``p/<subscription>/<sequence>``: a :class:`PendingDelivery` not yet delivered or given up
  (a tombstone once it has an outcome). Written before the alert's offset is committed, so a
  killed dispatcher resumes it with the same ``webhook-id`` and sequence.
- ``c/<subscription>``: its :class:`Cursor`, the last sequence number given and the last alert
  position matched per partition, so sequences stay gap-free and nothing is matched twice.
- ``a/<subscription>/<fingerprint>``: an alert an Alertmanager subscription has firing, re-posted
  until it resolves (a tombstone then).
"""

from __future__ import annotations

__all__ = ["Cursor", "DispatchState", "PendingDelivery", "encode", "firing_key"]

from dataclasses import dataclass, field
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas import Alert

_RECENT: Final = 256
"""Alert ids a cursor remembers, to skip an alert republished with the same id."""


class PendingDelivery(BaseModel):
    """One alert to deliver to one subscription, until it has an outcome."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    subscription_id: str
    sequence: int = Field(ge=1)
    webhook_id: str
    alert: Alert
    partition: int
    offset: int
    created_ms: int
    attempts: int = 0
    due_ms: int
    last_error: str | None = None

    @property
    def key(self) -> str:
        """Its key in the state topic."""
        return f"p/{self.subscription_id}/{self.sequence:012d}"


class Cursor(BaseModel):
    """How far one subscription's matching has got."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    subscription_id: str
    sequence: int = 0
    positions: dict[int, int] = Field(default_factory=dict)
    recent: tuple[str, ...] = ()
    backfilled: bool = False
    """Whether the alerts read before the subscription was first seen have been matched."""

    @property
    def key(self) -> str:
        """Its key in the state topic."""
        return f"c/{self.subscription_id}"

    def matched(self, partition: int, offset: int, alert_id: str) -> bool:
        """Whether the alert at this position (or with this id) was already given a sequence."""
        return offset <= self.positions.get(partition, -1) or alert_id in self.recent

    def advance(self, partition: int, offset: int, alert_id: str) -> Cursor:
        """The cursor after giving the next sequence number to this alert."""
        positions = {**self.positions, partition: max(offset, self.positions.get(partition, -1))}
        return self.model_copy(
            update={
                "sequence": self.sequence + 1,
                "positions": positions,
                "recent": (*self.recent, alert_id)[-_RECENT:],
            }
        )


@dataclass
class DispatchState:
    """Everything the state topic holds, loaded in memory."""

    pending: dict[str, PendingDelivery] = field(default_factory=dict)
    cursors: dict[str, Cursor] = field(default_factory=dict)
    firing: dict[str, dict[str, Alert]] = field(default_factory=dict)
    """Alertmanager subscription -> fingerprint -> the firing alert last posted."""
    invalid: int = 0

    def apply(self, key: str, value: bytes | None) -> None:
        """Fold one state-topic record in (a later record for a key replaces the earlier)."""
        kind, _, rest = key.partition("/")
        try:
            if kind == "p":
                if value is None:
                    self.pending.pop(key, None)
                else:
                    self.pending[key] = PendingDelivery.model_validate_json(value)
            elif kind == "c" and value is not None:
                self.cursors[rest] = Cursor.model_validate_json(value)
            elif kind == "a":
                sub_id, _, fp = rest.partition("/")
                if value is None:
                    self.firing.get(sub_id, {}).pop(fp, None)
                else:
                    self.firing.setdefault(sub_id, {})[fp] = Alert.model_validate_json(value)
        except ValidationError:
            self.invalid += 1

    def settle(self) -> None:
        """Make every cursor cover its pending deliveries.

        A dispatcher killed between writing a pending delivery and its cursor left the cursor
        behind; the pending record is the proof that its sequence and position were taken.
        """
        for item in self.pending.values():
            cursor = self.cursors.get(item.subscription_id) or Cursor(
                subscription_id=item.subscription_id
            )
            if not cursor.matched(item.partition, item.offset, str(item.alert.alert_id)):
                positions = {
                    **cursor.positions,
                    item.partition: max(item.offset, cursor.positions.get(item.partition, -1)),
                }
                cursor = cursor.model_copy(
                    update={
                        "positions": positions,
                        "recent": (*cursor.recent, str(item.alert.alert_id))[-_RECENT:],
                    }
                )
            if item.sequence > cursor.sequence:
                cursor = cursor.model_copy(update={"sequence": item.sequence})
            self.cursors[item.subscription_id] = cursor


def encode(model: BaseModel) -> bytes:
    """A state record's value."""
    return model.model_dump_json().encode()


def firing_key(sub_id: str, fp: str) -> str:
    """The key of an Alertmanager subscription's firing alert."""
    return f"a/{sub_id}/{fp}"
