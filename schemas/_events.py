"""The three event types and the envelope they share.

Every event is self-contained: the Kafka value holds the whole document below, and the CloudEvents
headers repeat the envelope so that routers can act without parsing the body.

Schema evolution: producers write the current ``SCHEMA_VERSION`` with no field the models do not
define (``extra="forbid"``). Readers are tolerant (``codec.decode_record``): a record of a *newer*
version is read without the fields this version does not know; a current-version record with an
unknown field is still bad.
"""

from __future__ import annotations

__all__ = [
    "SCHEMA_VERSION",
    "AccountDisrupted",
    "Actor",
    "Event",
    "EventBase",
    "NetworkIdentified",
    "ReportReleased",
]

import datetime as dt
from typing import Annotated, ClassVar, Literal
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from schemas._types import (
    Activity,
    Attribution,
    Confidence,
    EventType,
    Region,
    ShortText,
    Slug,
    Text,
    TextList,
)

SCHEMA_VERSION = 1

# strict: a JSON "5" is not 5 and a number is not a timestamp; in JSON input pydantic still
# accepts ISO 8601 strings for datetimes and dates, and canonical strings for UUIDs.
_FROZEN = ConfigDict(frozen=True, extra="forbid", strict=True)


def _reading(info: ValidationInfo) -> bool:
    return isinstance(info.context, dict) and bool(info.context.get("reader"))


class Actor(BaseModel):
    """Who is behind the activity, as attributed by the publisher."""

    model_config = _FROZEN

    region: Region = Field(
        description="ISO 3166-1 alpha-2 code of the attributed origin, or 'unknown'."
    )
    name: ShortText | None = Field(default=None, description="Actor or operator name, if given.")
    attribution: Attribution = Field(description="How firmly the actor is tied to a state.")
    confidence: Confidence = Field(default="moderate", description="Confidence in the attribution.")


class EventBase(BaseModel):
    """The envelope every event shares."""

    model_config = _FROZEN

    topic_name: ClassVar[str]
    """The logical topic this type travels on (prefixed by the settings' topic_prefix)."""

    event_id: UUID = Field(description="Unique id; also the idempotency key downstream.")
    type: EventType
    schema_version: int = Field(
        default=SCHEMA_VERSION,
        ge=1,
        description=(
            f"Version of this event's schema. Producers write {SCHEMA_VERSION}; readers accept "
            "higher versions and ignore the fields they do not know."
        ),
    )
    occurred_at: AwareDatetime = Field(description="When it happened (event time), with offset.")
    recorded_at: AwareDatetime = Field(description="When the publisher recorded it, with offset.")
    source: ShortText = Field(
        description="Who publishes: a URI reference naming the publishing system or report."
    )
    actor: Actor
    synthetic: bool = Field(
        default=False, description="True for generated events (samples, tests, benchmarks)."
    )

    @field_validator("schema_version")
    @classmethod
    def _current_unless_reading(cls, value: int, info: ValidationInfo) -> int:
        if value != SCHEMA_VERSION and not _reading(info):
            raise ValueError(
                f"Input should be {SCHEMA_VERSION}: producers write schema version "
                f"{SCHEMA_VERSION} (readers accept newer ones)"
            )
        return value

    @field_validator("occurred_at", "recorded_at")
    @classmethod
    def _whole_minute_offset(cls, value: dt.datetime) -> dt.datetime:
        # JSON carries RFC 3339 offsets, +hh:mm: orjson writes a Python offset with seconds
        # wrongly (+02:59:30 as "+02:60", which no reader accepts; +00:00:01 as "+00:00", another
        # instant), so such a time could be validated here and never read back.
        offset = value.utcoffset()
        if offset is not None and offset % dt.timedelta(minutes=1):
            shown = value.isoformat()[len(value.replace(tzinfo=None).isoformat()) :]
            raise ValueError(
                f"UTC offset {shown} is not a whole number of minutes; RFC 3339 offsets are "
                "+hh:mm (convert the time to UTC)"
            )
        return value

    @property
    def region(self) -> str:
        """The actor region: the Kafka key and the CloudEvents subject."""
        return self.actor.region


class AccountDisrupted(EventBase):
    """A platform disabled accounts belonging to a network."""

    topic_name: ClassVar[str] = "account-disrupted"

    type: Literal["account.disrupted"] = "account.disrupted"
    network_id: Slug = Field(description="The network the accounts belong to.")
    platform: ShortText = Field(description="Where the accounts were disrupted.")
    accounts: int = Field(ge=1, le=10_000_000, description="Number of accounts disrupted.")
    activity: Activity
    reason: Text = Field(description="Why they were disrupted, in the publisher's words.")


class NetworkIdentified(EventBase):
    """A network or operation was identified and described."""

    topic_name: ClassVar[str] = "network-identified"

    type: Literal["network.identified"] = "network.identified"
    network_id: Slug
    operation_name: ShortText
    activity: Activity
    targets: TextList = ()
    platforms: TextList = ()
    techniques: TextList = ()
    language: ShortText | None = None


class ReportReleased(EventBase):
    """A threat report was published."""

    topic_name: ClassVar[str] = "report-released"

    type: Literal["report.released"] = "report.released"
    report_id: Slug
    title: Text
    url: Annotated[str, StringConstraints(max_length=2_048, pattern=r"^https?://[^\s]+$")]
    published: dt.date
    date_precision: Literal["day", "month"] = "day"
    networks: Annotated[tuple[Slug, ...], Field(max_length=256)] = ()
    cumulative_claims: TextList = ()


Event = Annotated[
    AccountDisrupted | NetworkIdentified | ReportReleased, Field(discriminator="type")
]
"""Any event, told apart by its ``type`` field."""
