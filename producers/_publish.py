"""Publishing a JSON Lines stream: validate every line, send the good ones, report the bad ones."""

from __future__ import annotations

__all__ = ["PublishReport", "publish_lines"]

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from uuid import UUID

from disruptfeed.errors import DeliveryTimeoutError
from disruptfeed.settings import Settings
from producers._jsonl import LineResult, read_events
from producers._producer import FeedProducer, PublishOutcome
from producers._skew import too_far_ahead
from schemas import EventBase


@dataclass(slots=True)
class PublishReport:
    """Counts and problems from one publish run."""

    published: int = 0
    rejected: list[LineResult] = field(default_factory=list)
    duplicates: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)
    """Valid lines the broker did not acknowledge: (line number, reason)."""

    @property
    def ok(self) -> bool:
        """True when every line was published or skipped as a duplicate."""
        return not self.rejected and not self.failed

    def summary(self) -> str:
        """One line for people: what was published, rejected, skipped."""
        parts = [f"published {self.published}", f"rejected {len(self.rejected)}"]
        if self.duplicates:
            parts.append(f"skipped {self.duplicates} duplicate event ids")
        if self.failed:
            parts.append(f"failed {len(self.failed)} (broker did not acknowledge)")
        return ", ".join(parts)


async def publish_lines(
    lines: Iterable[bytes],
    settings: Settings,
    *,
    chunk: int = 1_000,
    on_rejected: Callable[[LineResult], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> PublishReport:
    """Validate and publish JSON Lines; every line is either published or reported.

    Args:
        lines: raw lines (bytes), e.g. an open binary file.
        settings: where to publish.
        chunk: events sent together before waiting for acknowledgements.
        on_rejected: called for each bad line as soon as it is found.
        on_progress: called with the number of lines handled since the last call.
    """
    report = PublishReport()
    seen: set[UUID] = set()
    batch: list[tuple[int, EventBase]] = []

    async with FeedProducer(settings) as producer:
        stalled = False  # a chunk met the delivery deadline: the broker is away

        async def flush() -> None:
            nonlocal stalled
            if stalled:
                # Each chunk would wait out the deadline again: the rest is reported unsent.
                unsent = "not sent: an earlier chunk was not acknowledged in time; send it again"
                outcomes = [
                    PublishOutcome(event.event_id, "", error=DeliveryTimeoutError(unsent))
                    for _, event in batch
                ]
            else:
                outcomes = await producer.publish_many([event for _, event in batch])
            for (line, _), outcome in zip(batch, outcomes, strict=True):
                if outcome.error is not None:
                    report.failed.append((line, str(outcome.error)))
                    stalled = stalled or isinstance(outcome.error, DeliveryTimeoutError)
                else:
                    report.published += 1
            if on_progress:
                on_progress(len(batch))
            batch.clear()

        for result in read_events(lines):
            if result.error is not None:
                report.rejected.append(result)
                if on_rejected:
                    on_rejected(result)
                if on_progress:
                    on_progress(1)
                continue
            assert result.event is not None
            if (ahead := too_far_ahead(result.event, settings)) is not None:
                refused = LineResult(result.line, error=ahead)
                report.rejected.append(refused)
                if on_rejected:
                    on_rejected(refused)
                continue
            if result.event.event_id in seen:
                # The id is the idempotency key: a second copy would change nothing downstream.
                report.duplicates += 1
                continue
            seen.add(result.event.event_id)
            batch.append((result.line, result.event))
            if len(batch) >= chunk:
                await flush()
        if batch:
            await flush()
    return report
