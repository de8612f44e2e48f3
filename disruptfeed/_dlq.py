"""Dead letters read back: shown to people (``dlq tail``), redriven by :mod:`disruptfeed._redrive`.

The worker (and the dispatcher) copy a record they refuse to ``<prefix>.dead-letter`` with the
reason and its source position in ``dlq_*`` headers (see :mod:`streams._processor`); an original
too big to copy is named instead, with ``dlq_value_bytes``.

A redrive judges each dead letter's value and CloudEvents headers again as the worker would
(decode, schema, the type its source topic takes, the future-time bound at the time of the
redrive). What passes is published again through :class:`~producers.FeedProducer` to its
source topic; what fails again is written again to the dead-letter topic with the new reason.
Either way the dead letter gets a *successor* in the dead-letter topic that names it in a
``dlq_redrive_of`` header: the new dead letter, or, for a published one, a marker record (empty
value, ``dlq_redriven_to`` naming where the event went). A dead letter with a successor is
never redriven again, so redriving the same range twice publishes nothing twice; a new dead
letter written by a redrive is itself redriven by the next one.
"""

from __future__ import annotations

__all__ = [
    "REDRIVEN_TO_HEADER",
    "REDRIVE_OF_HEADER",
    "DeadLetterReader",
    "DeadLetterRecord",
    "excerpt",
    "parse_since",
]

import codecs
import datetime as dt
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Literal, Self

from disruptfeed.errors import (
    ConfigurationError,
)
from disruptfeed.settings import Settings
from disruptfeed.topics import DEAD_LETTER
from schemas import (
    DLQ_CODE_HEADER,
    DLQ_ERROR_TYPE_HEADER,
    DLQ_FIELD_HEADER,
    DLQ_HEADERS,
    DLQ_OFFSET_HEADER,
    DLQ_PARTITION_HEADER,
    DLQ_REASON_HEADER,
    DLQ_TOPIC_HEADER,
    DLQ_VALUE_BYTES_HEADER,
)

REDRIVE_OF_HEADER: Final = "dlq_redrive_of"
"""On a record a redrive wrote to the dead-letter topic: the dead letter it succeeds,
``topic[partition]@offset``."""
REDRIVEN_TO_HEADER: Final = "dlq_redriven_to"
"""On a redrive's marker record: where the event was published, ``topic[partition]@offset``."""
_OURS: Final = frozenset({*DLQ_HEADERS, REDRIVE_OF_HEADER, REDRIVEN_TO_HEADER})


# --- showing values --------------------------------------------------------------------------

_ESCAPES: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _char(ch: str) -> str:
    if ch.isprintable():
        return ch
    if ch in _ESCAPES:
        return _ESCAPES[ch]
    code = ord(ch)
    return (
        f"\\x{code:02x}"
        if code < 0x100
        else f"\\u{code:04x}"
        if code < 0x10000
        else f"\\U{code:08x}"
    )


def _byte(b: int) -> str:
    if b == 0x5C:
        return "\\\\"
    if 0x20 <= b < 0x7F:
        return chr(b)
    return _ESCAPES.get(chr(b)) or f"\\x{b:02x}"


def excerpt(value: bytes | None, limit: int = 80) -> str:
    r"""A one-line, printable excerpt of a record value, at most about ``limit`` characters.

    UTF-8 text is shown as text, its control and other unprintable characters escaped (``\n``,
    ``\x00``, ``\u200b``). Bytes that are not UTF-8 are shown escaped (printable ASCII as is,
    the rest ``\xff``, a backslash ``\\``) when they are mostly ASCII, else as hex
    (``hex: ff fe 00``). A cut value ends with ``…`` and its full size in bytes.
    """
    if value is None:
        return "(no value)"
    if not value:
        return "(empty)"
    head = value[: limit * 4]  # enough for `limit` characters, whatever the encoding below
    partial = len(head) < len(value)
    pieces: Iterable[str]
    prefix = sep = ""
    try:
        # Incremental: a character cut in half at the end of `head` is not an error.
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=not partial)
        pieces = map(_char, text)
    except UnicodeDecodeError:
        ascii_ = sum(0x20 <= b < 0x7F or b in b"\t\n\r" for b in head)
        if ascii_ * 4 >= len(head) * 3:
            pieces = map(_byte, head)
        else:
            prefix, sep = "hex: ", " "
            pieces = (f"{b:02x}" for b in head)
    shown: list[str] = []
    used, cut = len(prefix), False
    for piece in pieces:
        extra = len(piece) + (len(sep) if shown else 0)
        if used + extra > limit:
            cut = True
            break
        shown.append(piece)
        used += extra
    body = prefix + sep.join(shown)
    return f"{body}… ({len(value):,} bytes)" if cut or partial else body


# --- the records -------------------------------------------------------------------------------


def _text(raw: bytes | None) -> str:
    return (raw or b"").decode("utf-8", "replace")


def _int(raw: bytes | None) -> int | None:
    text = _text(raw).strip()
    return int(text) if text.isascii() and text.isdigit() else None


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """One record of the dead-letter topic: a dead letter, or a redrive's marker."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    original: tuple[bytes | None, tuple[tuple[str, bytes | None], ...]] | None = None
    """For a dead letter that does not copy its original: the original's value and headers,
    once read from its source position (:func:`disruptfeed._dlq_originals.fetch_originals`)."""
    missing: str | None = None
    """Why the original of such a dead letter could not be read, if it was looked for."""

    @classmethod
    def from_record(cls, record: Any) -> DeadLetterRecord:
        """From an aiokafka ``ConsumerRecord``."""
        return cls(
            record.topic,
            record.partition,
            record.offset,
            int(record.timestamp or 0),
            record.key,
            record.value,
            tuple(record.headers or ()),
        )

    def header(self, name: str) -> bytes | None:
        """The last value of a header (a worker appends its reasons after the original's)."""
        found = None
        for key, raw in self.headers:
            if key == name:
                found = raw if raw is not None else b""
        return found

    @property
    def position(self) -> str:
        """Where this record is: ``topic[partition]@offset`` of the dead-letter topic."""
        return f"{self.topic}[{self.partition}]@{self.offset}"

    @property
    def written_at(self) -> dt.datetime:
        """When it was written to the dead-letter topic (the record's timestamp)."""
        return dt.datetime.fromtimestamp(self.timestamp_ms / 1000, dt.UTC)

    @property
    def reason(self) -> str:
        """Why the record was refused (``dlq_reason``)."""
        return _text(self.header(DLQ_REASON_HEADER))

    @property
    def error_type(self) -> str:
        """The error class (``dlq_error_type``), e.g. DecodeError."""
        return _text(self.header(DLQ_ERROR_TYPE_HEADER))

    @property
    def code(self) -> str:
        """The reason code it was counted under (``dlq_code``), e.g. decode or internal.

        Dead letters written before that header get the code their error type maps to.
        """
        raw = self.header(DLQ_CODE_HEADER)
        if raw is not None:
            return _text(raw)
        from streams._processor import reason_code_of

        return reason_code_of(self.error_type)

    @property
    def field(self) -> str:
        """The offending field's dotted path (``dlq_field``), '' if none."""
        return _text(self.header(DLQ_FIELD_HEADER))

    @property
    def source_topic(self) -> str:
        """The topic the refused record was read from."""
        return _text(self.header(DLQ_TOPIC_HEADER))

    @property
    def source_partition(self) -> int | None:
        """Its partition (None if the header is missing or not a number)."""
        return _int(self.header(DLQ_PARTITION_HEADER))

    @property
    def source_offset(self) -> int | None:
        """Its offset (None if the header is missing or not a number)."""
        return _int(self.header(DLQ_OFFSET_HEADER))

    @property
    def source(self) -> str:
        """The refused record's position, ``topic[partition]@offset``."""
        partition, offset = self.source_partition, self.source_offset
        p = "?" if partition is None else partition
        o = "?" if offset is None else offset
        return f"{self.source_topic or '?'}[{p}]@{o}"

    @property
    def value_bytes(self) -> int | None:
        """The original's size when it was too big to copy (``dlq_value_bytes``), else None."""
        if self.header(DLQ_VALUE_BYTES_HEADER) is None:
            return None
        return _int(self.header(DLQ_VALUE_BYTES_HEADER)) or 0

    @property
    def copied(self) -> bool:
        """Whether the value is the original's (False: it stayed at :attr:`source`)."""
        return self.value_bytes is None

    @property
    def redrive_of(self) -> str | None:
        """The dead letter a redrive wrote this record to succeed, if it did."""
        raw = self.header(REDRIVE_OF_HEADER)
        return None if raw is None else _text(raw)

    @property
    def redriven_to(self) -> str | None:
        """On a redrive's marker: where the event was published. None on a dead letter."""
        raw = self.header(REDRIVEN_TO_HEADER)
        return None if raw is None else _text(raw)

    @property
    def is_marker(self) -> bool:
        """Whether this is a redrive's marker (the dead letter it names was published)."""
        return self.redriven_to is not None

    @property
    def original_headers(self) -> list[tuple[str, bytes | None]]:
        """The headers the refused record itself had (its CloudEvents attributes)."""
        return [(k, v) for k, v in self.headers if k not in _OURS]

    def matches(self, reasons: Sequence[str]) -> bool:
        """Whether any filter is part of the reason, or is its error type or code (any case)."""
        if not reasons:
            return True
        reason, error_type, code = self.reason.lower(), self.error_type.lower(), self.code.lower()
        return any(r.lower() in reason or r.lower() in (error_type, code) for r in reasons)

    def value_excerpt(self, limit: int = 80) -> str:
        """The value, as :func:`excerpt` shows it; or where the original is, if not copied."""
        if not self.copied:
            return f"not copied: {self.value_bytes:,} bytes, see {self.source}"
        return excerpt(self.value, limit)

    def row(self, successor: str | None = None, limit: int = 200) -> dict[str, Any]:
        """A JSON-ready description (``dlq tail --output json``)."""
        size = self.value_bytes if not self.copied else len(self.value or b"")
        return {
            "position": self.position,
            "dead_lettered_at": self.written_at.isoformat().replace("+00:00", "Z"),
            "source": self.source,
            "source_topic": self.source_topic,
            "source_partition": self.source_partition,
            "source_offset": self.source_offset,
            "reason": self.reason,
            "code": self.code,
            "error_type": self.error_type,
            "field": self.field,
            "copied": self.copied,
            "value_bytes": size,
            "value": self.value_excerpt(limit),
            "key": None if self.key is None else excerpt(self.key, 40),
            "redrive_of": self.redrive_of,
            "redriven": successor,
        }


# --- times ---------------------------------------------------------------------------------

_AGO: Final = re.compile(r"(\d+)\s*([smhdw])")
_UNIT_S: Final = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_since(value: str, now: dt.datetime | None = None) -> dt.datetime:
    """An ISO 8601 time (UTC if it has no offset), or a span back from now: 90s, 15m, 2h, 7d, 1w.

    Raises:
        ConfigurationError: neither.
    """
    ago = _AGO.fullmatch(value.strip())
    if ago:
        now = now or dt.datetime.now(dt.UTC)
        return now - dt.timedelta(seconds=int(ago[1]) * _UNIT_S[ago[2]])
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ConfigurationError(
            f"{value!r} is neither an ISO 8601 time (2026-10-01T00:00Z) nor a span such as "
            "30m, 2h or 7d"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


# --- reading -------------------------------------------------------------------------------


class DeadLetterReader:
    """Reads the dead-letter topic: what is there now (:meth:`backlog`), then what comes.

    Use as an async context manager; :meth:`seek` before reading.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = settings.topic(DEAD_LETTER)
        self._consumer: Any = None
        self._parts: list[Any] = []
        self._ends: dict[Any, int] = {}
        self._ahead: list[Any] = []

    async def __aenter__(self) -> Self:
        from aiokafka import TopicPartition

        from consumers._kafka import assign_at, partitions_of, start_consumer

        self._consumer = consumer = await start_consumer(self.settings)
        try:
            parts = await partitions_of(consumer, self.topic, self.settings.bootstrap)
            self._parts = [TopicPartition(self.topic, p) for p in parts]
            self._ends = await consumer.end_offsets(self._parts)
            # Positioned as assigned (at the end until seek() says otherwise): see assign_at.
            await assign_at(
                consumer, self._parts, start={tp.partition: self._ends[tp] for tp in self._parts}
            )
        except BaseException:
            await consumer.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def seek(self, start: Literal["earliest", "latest"] | dt.datetime) -> None:
        """Start at the beginning, at the end, or at the first record written at ``start``."""
        consumer = self._consumer
        # Explicit offsets: seek_to_beginning() races the reset to the latest offset that
        # assign() starts, and may lose (aiokafka 0.14 applies whichever answer comes back).
        if start == "earliest":
            found = await consumer.beginning_offsets(self._parts)
            for tp in self._parts:
                consumer.seek(tp, found[tp])
        elif start == "latest":
            for tp in self._parts:
                consumer.seek(tp, self._ends[tp])
        else:
            ms = int(start.timestamp() * 1000)
            found = await consumer.offsets_for_times(dict.fromkeys(self._parts, ms))
            for tp in self._parts:
                at = found.get(tp)
                consumer.seek(tp, at.offset if at is not None else self._ends[tp])

    async def backlog(self) -> AsyncIterator[DeadLetterRecord]:
        """The records up to the end offsets the topic had when the reader opened."""
        consumer = self._consumer
        while True:
            left = [tp for tp in self._parts if await consumer.position(tp) < self._ends[tp]]
            if not left:
                return
            batches = await consumer.getmany(*left, timeout_ms=1_000)
            for tp, records in batches.items():
                for record in records:
                    if record.offset < self._ends[tp]:
                        yield DeadLetterRecord.from_record(record)
                    else:  # arrived since: kept for live()
                        self._ahead.append(record)

    async def live(self) -> AsyncIterator[DeadLetterRecord]:
        """Every record after the backlog, as it arrives; never ends by itself."""
        ahead, self._ahead = self._ahead, []
        for record in ahead:
            yield DeadLetterRecord.from_record(record)
        while True:
            batches = await self._consumer.getmany(timeout_ms=1_000)
            for records in batches.values():
                for record in records:
                    yield DeadLetterRecord.from_record(record)
