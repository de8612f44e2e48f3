"""The per-record logic of the worker, free of Faust so it can be tested and benchmarked alone.

For each record: decode and validate; route anything invalid to the dead-letter topic with the
reason and the record's position in headers; skip an event id that was already counted; decide
lateness from the source partition's watermark; count; evaluate alert rules.
"""

from __future__ import annotations

__all__ = [
    "DEAD_LETTER_REASONS",
    "DeadLetter",
    "Outcome",
    "Processor",
    "Stats",
    "dead_letter_headers",
    "dead_letter_reason",
]

import collections
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final
from uuid import UUID

from disruptfeed import errors
from disruptfeed.errors import (
    BeyondDedupeHorizonError,
    DecodeError,
    FieldProblem,
    FutureEventTimeError,
    InvalidEventError,
    SchemaValidationError,
)
from disruptfeed.settings import Settings
from disruptfeed.topics import event_types_by_topic
from schemas import (
    DLQ_CODE_HEADER,
    DLQ_ERROR_TYPE_HEADER,
    DLQ_FIELD_HEADER,
    DLQ_OFFSET_HEADER,
    DLQ_PARTITION_HEADER,
    DLQ_REASON_HEADER,
    DLQ_TOPIC_HEADER,
    DLQ_VALUE_BYTES_HEADER,
    EventBase,
    codec,
)
from streams._alerts import Alert, to_ms
from streams._engine import AlertEngine
from streams._rules import load_rules
from streams._seen import SeenIds
from streams._windows import Counted, CountStore

_SAMPLE_IDS = 10
SWEEP_EVERY_MS = 300_000
"""Stream time between re-evaluations of a partition's firing alerts (slides windows, ends holds).

Sweeping on every event cost three quarters of the worker's time (profiled with the bench's
events). Once per five minutes of stream time per partition and event type, like Alertmanager's
default resolve_timeout of 5m, bounds how late a ``resolved`` can be; it depends only on the
partition's own order, so alerts stay deterministic. A region's own events still re-evaluate its
alerts at once."""
DLQ_MAX_COPY = 960 * 1024
"""Largest original value (plus its headers) a dead letter copies: topics take 1 MiB records,
and the dead letter adds up to ~4 KiB of reasons. A bigger original stays where it is and the
dead letter names it (topic, partition, offset) and its size instead."""
MAX_KEY_BYTES = 256
"""Longest record key taken: keys are actor regions (at most 7 bytes). A longer one is
dead-lettered, and not copied into the dead letter."""
log = logging.getLogger(__name__)


DEAD_LETTER_REASONS: Final = (
    (BeyondDedupeHorizonError, "beyond-dedupe-horizon"),
    (FutureEventTimeError, "future-event-time"),
    (DecodeError, "decode"),
    (SchemaValidationError, "schema"),
    (InvalidEventError, "invalid"),
)
"""Error type -> the short reason code dead letters are counted by (``internal`` otherwise: a
bug of the worker's, not bad input). A fixed set, so the metric's cardinality stays bounded."""


def dead_letter_reason(error: BaseException) -> str:
    """The reason code a dead letter for ``error`` is counted under (see DEAD_LETTER_REASONS)."""
    for kind, code in DEAD_LETTER_REASONS:
        if isinstance(error, kind):
            return code
    return "internal"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record to copy to the dead-letter topic, unchanged but for the reason headers."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def too_big_to_copy(value: bytes | None, headers: Iterable[tuple[str, bytes | None]]) -> bool:
    """Whether a dead letter names this original instead of copying it (:data:`DLQ_MAX_COPY`)."""
    return len(value or b"") + sum(len(k) + len(v or b"") for k, v in headers) > DLQ_MAX_COPY


def reason_code_of(error_type: str) -> str:
    """The reason code of a dead letter that names only its error class (``dlq_error_type``).

    For dead letters written before ``dlq_code``: a class of :mod:`disruptfeed.errors` maps as
    :func:`dead_letter_reason` maps its instances; any other class was a bug, ``internal``.
    """
    kind = getattr(errors, error_type, None) if error_type.isidentifier() else None
    if isinstance(kind, type):
        for known, code in DEAD_LETTER_REASONS:
            if issubclass(kind, known):
                return code
    return "internal"


def dead_letter_headers(
    topic: str, partition: int, offset: int, error: Exception, code: str | None = None
) -> list[tuple[str, bytes]]:
    """Headers that say where a rejected record came from and why it was rejected.

    ``code`` is the reason code it is counted under; by default :func:`dead_letter_reason`'s.
    """
    field = error.field if isinstance(error, InvalidEventError) else ""
    return [
        (DLQ_REASON_HEADER, str(error).encode()[:4_096]),
        (DLQ_TOPIC_HEADER, topic.encode()),
        (DLQ_PARTITION_HEADER, str(partition).encode()),
        (DLQ_OFFSET_HEADER, str(offset).encode()),
        (DLQ_FIELD_HEADER, field.encode()),
        (DLQ_ERROR_TYPE_HEADER, type(error).__name__.encode()),
        (DLQ_CODE_HEADER, (code or dead_letter_reason(error)).encode()),
    ]


@dataclass(slots=True)
class Outcome:
    """What processing one record produced."""

    event: EventBase | None = None
    counted: Counted | None = None
    duplicate: bool = False
    dead_letter: DeadLetter | None = None
    alerts: list[Alert] = field(default_factory=list)
    internal_error: bool = False
    """The dead letter is for a bug of the worker's, which may have left the record half
    applied to the counts or episodes (bad input is refused before it changes anything)."""


_TOTALS: Final = ("processed", "counted", "duplicates", "dead_lettered", "late", "alerts_sent")


@dataclass(slots=True)
class Stats:
    """Running totals since the worker started (not persisted).

    Plain ints, read by the worker's metrics collector at scrape time (streams._metrics): one
    dict increment per counted event is all the per-event cost metrics add.
    """

    processed: int = 0
    counted: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    late: int = 0
    alerts_sent: int = 0
    counted_by_type: dict[str, int] = field(default_factory=dict)
    late_by_type: dict[str, int] = field(default_factory=dict)
    dead_lettered_by_reason: dict[str, int] = field(default_factory=dict)
    """Reason code (:func:`dead_letter_reason`) -> dead letters."""
    alerts_by_rule: dict[tuple[str, str], int] = field(default_factory=dict)
    """(rule, status) -> alert messages sent."""

    def totals(self) -> dict[str, int]:
        """The overall totals (what /health and /stats show)."""
        return {name: getattr(self, name) for name in _TOTALS}

    def copy(self) -> Stats:
        """An independent copy (the dicts too)."""
        return Stats(
            **self.totals(),
            counted_by_type=dict(self.counted_by_type),
            late_by_type=dict(self.late_by_type),
            dead_lettered_by_reason=dict(self.dead_lettered_by_reason),
            alerts_by_rule=dict(self.alerts_by_rule),
        )

    def dead_letter(self, reason: str, n: int = 1) -> None:
        """Count ``n`` dead letters for ``reason``."""
        self.dead_lettered += n
        by_reason = self.dead_lettered_by_reason
        by_reason[reason] = by_reason.get(reason, 0) + n


class Processor:
    """Turns source records into counts and alerts.

    Args:
        store: the rolling counts.
        engine: the alert rules and their lifecycle state.
        topic_types: full source topic name -> the event type that belongs on it.
        max_future_ms: how far an event's time may be ahead of its record's timestamp (the
            publish time); further, it is dead-lettered and never moves stream time. None: no
            limit.
        dedupe_horizon_ms: how far behind its partition's stream time an event may be and still
            be checked against the ids counted before; further, it is dead-lettered
            (``beyond-dedupe-horizon``), and ids that old are forgotten. At least the store's
            retention plus grace. None: keep every id.
    """

    def __init__(
        self,
        store: CountStore,
        engine: AlertEngine,
        topic_types: dict[str, str],
        max_future_ms: int | None = None,
        dedupe_horizon_ms: int | None = None,
    ) -> None:
        self.store = store
        self.engine = engine
        self.topic_types = topic_types
        self.max_future_ms = max_future_ms
        if dedupe_horizon_ms is not None:
            dedupe_horizon_ms = max(dedupe_horizon_ms, store.retain_ms + store.grace_ms)
        self.dedupe_horizon_ms = dedupe_horizon_ms
        self.seen = SeenIds()
        """Ids of the events counted, when ``process`` is not given a ``seen`` of its own."""
        self.replayed: dict[str, int] = {}
        """Source -> the last offset whose effects the state holds: restored from the tables,
        then moved by every record processed (records of a partition arrive in offset order)."""
        self.stats = Stats()
        self._partition_of: dict[str, int] = {}
        self._swept: dict[tuple[int, str], int] = {}
        self._recent: collections.defaultdict[tuple[str, str], collections.deque[UUID]] = (
            collections.defaultdict(lambda: collections.deque(maxlen=_SAMPLE_IDS))
        )

    @classmethod
    def for_settings(cls, settings: Settings) -> Processor:
        """The processor a worker with these settings runs: rules file, grace, skew limit."""
        return cls(
            CountStore(grace_ms=settings.grace_seconds * 1000),
            AlertEngine(load_rules(settings.rules_file)),
            event_types_by_topic(settings),
            max_future_ms=settings.max_future_skew_seconds * 1000,
            dedupe_horizon_ms=settings.dedupe_horizon_days * 86_400_000,
        )

    def rebuilt(self) -> None:
        """Rebuild the sweep state after ``store`` and ``engine`` came back from the tables.

        Sweeps re-evaluate only the episodes of regions known to be on the partition whose
        stream time moved; without this, episodes restored after a restart or a rebalance were
        never swept again, and a restored firing alert never resolved.
        """
        self._swept.clear()
        self._partition_of = {
            region: int(source.rsplit(":", 1)[1])
            for (region, _), source in self.store.sources().items()
            if source
        }

    def process(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        headers: Iterable[tuple[str, bytes]],
        seen: Callable[[int], bool] | None = None,
        *,
        timestamp_ms: int | None = None,
    ) -> Outcome:
        """Process one record; ``seen(id)`` says whether an event id was already counted.

        Without ``seen``, the processor keeps the ids itself (:attr:`seen`), forgetting those
        beyond the dedupe horizon.

        ``timestamp_ms`` is the record's timestamp (its publish time), against which an event
        time too far ahead is refused (see ``max_future_ms``).

        The id is passed as its 128-bit integer (``UUID.int``): a set of those takes a third less
        memory than one of the ids' text (77 vs 119 bytes an id, tracemalloc, a million ids).

        Never raises: a record that breaks the worker itself (a bug, not bad input) is
        dead-lettered with the exception as its reason, so one record cannot stop the stream
        or send it round a crash-restart loop.
        """
        headers = list(headers)
        self.stats.processed += 1
        source = f"{topic}:{partition}"
        if offset <= self.replayed.get(source, -1):
            # Read again after a restart or rebalance, though the tables (or this process,
            # since) already hold what it did: skipped whole (a count, a dead letter or
            # nothing; its id may be forgotten). Faust re-delivers from the committed offset
            # after a rebalance's seek, past records it had handed over just before.
            self.stats.duplicates += 1
            return Outcome(duplicate=True)
        self.replayed[source] = offset
        try:
            if key is not None and len(key) > MAX_KEY_BYTES:
                problem = f"{len(key)} bytes; keys are actor regions, at most {MAX_KEY_BYTES}"
                raise DecodeError([FieldProblem("key", problem)])
            return self._process(topic, source, partition, headers, value, seen, timestamp_ms)
        except InvalidEventError as exc:
            error: Exception = exc
            internal = False
        except Exception as exc:
            log.exception("internal error on %s[%d]@%d; dead-lettered", topic, partition, offset)
            error, internal = exc, True
        code = "internal" if internal else dead_letter_reason(error)
        self.stats.dead_letter(code)
        reasons = dead_letter_headers(topic, partition, offset, error, code)
        if key is not None and len(key) > MAX_KEY_BYTES:
            key = None
        if too_big_to_copy(value, headers):
            reasons.append((DLQ_VALUE_BYTES_HEADER, str(len(value or b"")).encode()))
            return Outcome(dead_letter=DeadLetter(key, None, reasons), internal_error=internal)
        dead = DeadLetter(key, value, [*headers, *reasons])
        return Outcome(dead_letter=dead, internal_error=internal)

    def _process(
        self,
        topic: str,
        source: str,
        partition: int,
        headers: list[tuple[str, bytes]],
        value: bytes | None,
        seen: Callable[[int], bool] | None,
        timestamp_ms: int | None,
    ) -> Outcome:
        event = codec.decode_record(value, headers)
        expected = self.topic_types.get(topic)
        if expected is not None and event.type != expected:
            raise SchemaValidationError(
                [FieldProblem("type", f"{event.type!r} does not belong on topic {topic!r}")]
            )
        occurred_ms = to_ms(event.occurred_at)
        limit = self.max_future_ms
        if limit is not None and timestamp_ms is not None and occurred_ms > timestamp_ms + limit:
            raise FutureEventTimeError.ahead(occurred_ms, timestamp_ms, limit // 1000)
        event_int = event.event_id.int
        if seen(event_int) if seen is not None else self.seen.seen(event_int, source, occurred_ms):
            self.stats.duplicates += 1
            return Outcome(event=event, duplicate=True)
        horizon = self.dedupe_horizon_ms
        mark = self.store.watermark(source)
        if horizon is not None and mark is not None and occurred_ms < mark - horizon:
            raise BeyondDedupeHorizonError.behind(occurred_ms, mark, horizon // 86_400_000)
        late = self.store.classify(source, occurred_ms)
        accounts = getattr(event, "accounts", 1)
        counted = Counted(event.type, event.region, occurred_ms, accounts, late, source)
        self.store.add(counted)
        if seen is None:
            self.seen.add(event_int, source, occurred_ms)
            if horizon is not None:
                self.seen.evict_before(source, (self.store.watermark(source) or 0) - horizon)
        stats = self.stats
        stats.counted += 1
        by_type = stats.counted_by_type
        by_type[event.type] = by_type.get(event.type, 0) + 1
        if late:
            stats.late += 1
            stats.late_by_type[event.type] = stats.late_by_type.get(event.type, 0) + 1
        recent = self._recent[(event.region, event.type)]
        recent.append(event.event_id)
        now = self.store.watermark(source) or occurred_ms
        alerts = self.engine.on_event(event, self.store, now, recent)
        self._partition_of[event.region] = partition
        due = self._swept.get((partition, event.type))
        if due is None or now >= due:
            self._swept[(partition, event.type)] = now + SWEEP_EVERY_MS
            partition_of = self._partition_of
            alerts += self.engine.sweep(
                self.store,
                now,
                # Only episodes this partition's stream time governs: keeps alerts deterministic.
                where=lambda region, _: partition_of.get(region) == partition,
                event_type=event.type,
            )
        if alerts:
            stats.alerts_sent += len(alerts)
            by_rule = stats.alerts_by_rule
            for alert in alerts:
                key = (alert.rule, alert.status)
                by_rule[key] = by_rule.get(key, 0) + 1
        return Outcome(event=event, counted=counted, alerts=alerts)
