"""Redriving dead letters: each judged again as the worker would, published when valid now.

See :mod:`disruptfeed._dlq` for the dead letters themselves and the successor records that make
a redrive safe to repeat.
"""

from __future__ import annotations

__all__ = ["RedriveItem", "plan_redrive", "redrive"]

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

from disruptfeed._dlq import REDRIVE_OF_HEADER, REDRIVEN_TO_HEADER, DeadLetterRecord
from disruptfeed.errors import FieldProblem, InvalidEventError, SchemaValidationError
from disruptfeed.settings import Settings
from disruptfeed.topics import DEAD_LETTER, event_types_by_topic
from schemas import (
    DLQ_ERROR_TYPE_HEADER,
    DLQ_FIELD_HEADER,
    DLQ_OFFSET_HEADER,
    DLQ_PARTITION_HEADER,
    DLQ_REASON_HEADER,
    DLQ_TOPIC_HEADER,
    DLQ_VALUE_BYTES_HEADER,
    Event,
    codec,
)

Action = Literal["redriven", "failed-again", "skipped", "already-redriven", "not-acknowledged"]


@dataclass(slots=True)
class RedriveItem:
    """One dead letter's redrive: what was (or would be) done with it, and why."""

    letter: DeadLetterRecord
    action: Action
    detail: str = ""
    event: Event | None = None
    error: Exception | None = None
    result: str | None = None
    """Where it went: the published position, or the new dead letter's."""

    def row(self) -> dict[str, Any]:
        """A JSON-ready description."""
        letter = self.letter
        return {
            "position": letter.position,
            "source": letter.source,
            "action": self.action,
            "detail": self.detail,
            "event_id": None if self.event is None else str(self.event.event_id),
            "result": self.result,
        }


def _judge(letter: DeadLetterRecord, topic_types: dict[str, str], settings: Settings) -> Event:
    """The dead letter's event if it is valid now, as the worker and the producer check it.

    Raises:
        InvalidEventError: why it is still not.
    """
    from producers._skew import too_far_ahead

    value, headers = letter.original or (letter.value, tuple(letter.original_headers))
    event = codec.decode_record(value, headers)  # type: ignore[arg-type]
    expected = topic_types[letter.source_topic]
    if event.type != expected:
        raise SchemaValidationError(
            [
                FieldProblem(
                    "type", f"{event.type!r} does not belong on topic {letter.source_topic!r}"
                )
            ]
        )
    ahead = too_far_ahead(event, settings)
    if ahead is not None:
        raise ahead
    return event


def plan_redrive(
    records: Iterable[DeadLetterRecord], settings: Settings, reasons: Sequence[str] = ()
) -> list[RedriveItem]:
    """What a redrive does with each dead letter among ``records`` that matches ``reasons``.

    ``records`` are the dead-letter topic's, in order: a successor (see the module docstring)
    comes after the dead letter it names, so one pass finds every dead letter already redriven.
    """
    topic_types = event_types_by_topic(settings)
    letters: list[DeadLetterRecord] = []
    successors: dict[str, str] = {}
    for record in records:
        if record.redrive_of is not None:
            successors[record.redrive_of] = record.redriven_to or record.position
        if not record.is_marker and record.matches(reasons):
            letters.append(record)
    items = []
    for letter in letters:
        if letter.position in successors:
            where = successors[letter.position]
            items.append(RedriveItem(letter, "already-redriven", f"already redriven: {where}"))
        elif not letter.copied and letter.original is None:
            detail = letter.missing or letter.value_excerpt()
            items.append(RedriveItem(letter, "skipped", detail))
        elif (
            letter.source_topic not in topic_types
            or letter.source_partition is None
            or letter.source_offset is None
        ):
            detail = f"not from an event topic of this feed: {letter.source}"
            items.append(RedriveItem(letter, "skipped", detail))
        else:
            try:
                event = _judge(letter, topic_types, settings)
            except InvalidEventError as exc:
                items.append(RedriveItem(letter, "failed-again", str(exc), error=exc))
            else:
                detail = f"{event.type} {event.event_id} to {letter.source_topic}"
                items.append(RedriveItem(letter, "redriven", detail, event=event))
    return items


def _marker_headers(letter: DeadLetterRecord, published: str) -> list[tuple[str, bytes]]:
    return [
        (DLQ_REASON_HEADER, f"redriven: published to {published}".encode()),
        (DLQ_TOPIC_HEADER, letter.source_topic.encode()),
        (DLQ_PARTITION_HEADER, str(letter.source_partition).encode()),
        (DLQ_OFFSET_HEADER, str(letter.source_offset).encode()),
        (DLQ_FIELD_HEADER, letter.field.encode()),
        (DLQ_ERROR_TYPE_HEADER, letter.error_type.encode()),
        (REDRIVE_OF_HEADER, letter.position.encode()),
        (REDRIVEN_TO_HEADER, published.encode()),
    ]


def _again(
    letter: DeadLetterRecord, error: Exception
) -> tuple[bytes, list[tuple[str, bytes | None]]]:
    """The value and headers of the dead letter that replaces ``letter``, failed again.

    It copies the original as the worker does: unless it is too big, then it names it.
    """
    from streams._processor import dead_letter_headers, too_big_to_copy

    assert letter.source_partition is not None
    assert letter.source_offset is not None
    reasons: list[tuple[str, bytes | None]] = [
        *dead_letter_headers(
            letter.source_topic, letter.source_partition, letter.source_offset, error
        ),
        (REDRIVE_OF_HEADER, letter.position.encode()),
    ]
    value, headers = letter.original or (letter.value, tuple(letter.original_headers))
    if too_big_to_copy(value, headers):
        return b"", [*reasons, (DLQ_VALUE_BYTES_HEADER, str(len(value or b"")).encode())]
    return value or b"", [*headers, *reasons]


async def redrive(
    settings: Settings,
    items: list[RedriveItem],
    on_progress: Callable[[int], object] | None = None,
    chunk: int = 500,
) -> None:
    """Carry out a plan (:func:`plan_redrive`), updating each item with what happened.

    Events are published (and acknowledged) before their markers are written: a redrive
    stopped in between publishes those events again next time, which the worker counts once.

    Raises:
        BrokerError: the broker is unreachable (nothing was done), or refused a dead letter.
    """
    from consumers._kafka import start_producer
    from producers import FeedProducer

    topic = settings.topic(DEAD_LETTER)
    todo = [i for i in items if i.action in ("redriven", "failed-again")]
    if not todo:
        return
    published: dict[UUID, str] = {}  # event id -> where this redrive published it
    raw = await start_producer(settings)
    try:
        async with FeedProducer(settings) as producer:
            for start in range(0, len(todo), chunk):
                batch = todo[start : start + chunk]
                await _publish(producer, batch, published)
                futures = []
                for item in batch:
                    letter = item.letter
                    if item.action == "redriven":
                        assert item.result is not None
                        headers: list[tuple[str, bytes | None]] = list(
                            _marker_headers(letter, item.result)
                        )
                        value = b""
                    elif item.action == "failed-again":
                        assert item.error is not None
                        value, headers = _again(letter, item.error)
                    else:
                        continue
                    future = await raw.send(topic, value=value, key=letter.key, headers=headers)
                    futures.append((item, future))
                for item, future in futures:
                    meta = await future
                    if item.action == "failed-again":
                        item.result = f"{topic}[{meta.partition}]@{meta.offset}"
                if on_progress is not None:
                    on_progress(len(batch))
    finally:
        await raw.stop()


async def _publish(producer: Any, batch: list[RedriveItem], published: dict[UUID, str]) -> None:
    """Publish the batch's valid events; an event this redrive published already is not sent."""
    fresh = [
        i for i in batch if i.action == "redriven" and i.event and i.event.event_id not in published
    ]
    outcomes = await producer.publish_many([i.event for i in fresh])
    refused: dict[UUID, Exception] = {}
    for outcome in outcomes:
        if outcome.error is None and not outcome.duplicate:
            where = f"{outcome.topic}[{outcome.partition}]@{outcome.offset}"
            published[outcome.event_id] = where
        elif outcome.error is not None:
            refused[outcome.event_id] = outcome.error
    for item in batch:
        if item.action != "redriven" or item.event is None:
            continue
        event_id = item.event.event_id
        error = refused.get(event_id)
        if isinstance(error, InvalidEventError):  # the clock moved: too far ahead now
            item.action, item.error, item.detail = "failed-again", error, str(error)
        elif error is not None or event_id not in published:
            item.action, item.detail = "not-acknowledged", str(error or "not acknowledged")
        else:
            item.result = published[event_id]
