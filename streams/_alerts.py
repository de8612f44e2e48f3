"""The alert lifecycle that emits :class:`schemas.Alert` messages, and its persisted episodes.

The wire model and its codec live in :mod:`schemas` (``schemas._alerts``); they are re-exported
here for the engine's convenience. :class:`Lifecycle` keeps one :class:`Episode` per fingerprint
and decides, Alertmanager-style and in stream time only, when a message is due: the first
``firing``, repeats, the one ``resolved``.
"""

from __future__ import annotations

__all__ = [
    "ALERT_CE_SOURCE",
    "ALERT_NAMESPACE",
    "MAX_SAMPLES",
    "Alert",
    "AlertKind",
    "AlertStatus",
    "Episode",
    "Lifecycle",
    "Severity",
    "alert_ce_type",
    "alert_headers",
    "alert_key",
    "decode_alert",
    "derive_alert_id",
    "encode_alert",
    "fingerprint",
    "from_ms",
    "merge_samples",
    "to_ms",
]

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Final, Literal
from uuid import UUID

from pydantic import ConfigDict, Field, TypeAdapter

from schemas._alerts import (
    ALERT_CE_SOURCE,
    ALERT_NAMESPACE,
    MAX_SAMPLES,
    Alert,
    AlertKind,
    AlertStatus,
    Severity,
    alert_ce_type,
    alert_headers,
    alert_key,
    decode_alert,
    derive_alert_id,
    encode_alert,
    fingerprint,
    from_ms,
    to_ms,
)


def merge_samples(old: Sequence[UUID], new: Sequence[UUID]) -> tuple[UUID, ...]:
    """The most recent distinct ids of both, oldest first, at most :data:`MAX_SAMPLES`."""
    # Keyed by the 128-bit int: UUID.__hash__ is Python code, and this runs per counted event.
    return tuple({u.int: u for u in (*old, *new)}.values())[-MAX_SAMPLES:]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Episode:
    """What the engine remembers about one firing alert: one row of its persisted state.

    Window rules (``threshold``, ``surge``) hold while ``value >= threshold``; immediate rules
    hold until ``hold_until_ms``. Times are stream time in epoch milliseconds.

    A plain dataclass, not a pydantic model: the engine builds one per rule evaluation, many times
    per event, from values mypy has checked. Stored state is validated on the way back in
    (:meth:`from_state`).
    """

    __pydantic_config__ = ConfigDict(extra="forbid")

    v: Literal[1] = 1
    rule: str
    kind: AlertKind
    severity: Severity
    labels: dict[str, str]
    starts_ms: int
    last_sent_ms: int
    last_eval_ms: int
    window: str | None = None
    value: int | None = None
    threshold: float | None = None
    baseline: float | None = None
    hold_until_ms: int | None = None
    repeats: int = 0
    """How many repeats of the first ``firing`` were sent (0 in rows of the first release)."""
    sample_ids: Annotated[tuple[UUID, ...], Field(max_length=MAX_SAMPLES)] = ()
    summary: str

    def to_state(self) -> dict[str, Any]:
        """This episode as plain JSON data (one table row)."""
        state: dict[str, Any] = _EPISODE.dump_python(self, mode="json")
        return state

    @staticmethod
    def from_state(data: Mapping[str, Any]) -> Episode:
        """An episode from :meth:`to_state` data.

        Raises:
            pydantic.ValidationError: a field is missing, unknown or of the wrong type.
        """
        return _EPISODE.validate_python(data)

    def replace(self, **changes: Any) -> Episode:
        """A copy with ``changes`` applied (:func:`dataclasses.replace`, at half the cost)."""
        values = {name: getattr(self, name) for name in _EPISODE_FIELDS}
        values.update(changes)
        return Episode(**values)

    def holds(self, now_ms: int) -> bool:
        """Whether the condition still holds at stream time ``now_ms``."""
        if self.hold_until_ms is not None:
            return now_ms < self.hold_until_ms
        return (
            self.value is not None and self.threshold is not None and self.value >= self.threshold
        )

    def observe(self, fresh: Episode) -> Episode:
        """This episode updated by a newer evaluation of the same fingerprint.

        The start, last send and repeat count stay; the measurements are the fresh ones; sample
        ids merge; a hold only ever extends (a network named again while held stays one episode).
        """
        holds = [h for h in (self.hold_until_ms, fresh.hold_until_ms) if h is not None]
        return fresh.replace(
            starts_ms=self.starts_ms,
            last_sent_ms=self.last_sent_ms,
            repeats=self.repeats,
            hold_until_ms=max(holds, default=None),
            sample_ids=merge_samples(self.sample_ids, fresh.sample_ids),
        )

    def alert(self, fp: str, status: AlertStatus, ends_ms: int | None = None) -> Alert:
        """The alert message for this episode, keyed by its fingerprint ``fp``."""
        starts_at = from_ms(self.starts_ms)
        repeat = self.repeats if status == "firing" else 0
        return Alert(
            alert_id=derive_alert_id(fp, status, starts_at, repeat),
            rule=self.rule,
            kind=self.kind,
            region=self.labels["region"],
            event_type=self.labels["event_type"],
            severity=self.severity,
            status=status,
            repeat=repeat,
            window=self.window,
            value=self.value,
            threshold=self.threshold,
            baseline=self.baseline,
            sample_event_ids=self.sample_ids,
            fingerprint=fp,
            starts_at=starts_at,
            ends_at=None if ends_ms is None else from_ms(ends_ms),
            evaluated_at=from_ms(self.last_eval_ms),
            summary=self.summary,
        )


_EPISODE: Final = TypeAdapter(Episode)
_EPISODE_FIELDS: Final = tuple(f.name for f in dataclasses.fields(Episode))


class Lifecycle:
    """Alertmanager's lifecycle per fingerprint, in stream time.

    One ``firing`` when an episode starts; silence while it holds, but for a repeat once
    ``repeat_ms`` of stream time has passed since the last send; one ``resolved`` when it ends.

    Args:
        repeat_ms: stream time between repeats of a firing alert; None: never repeat.
    """

    def __init__(self, repeat_ms: int | None) -> None:
        self.repeat_ms = repeat_ms
        self.episodes: dict[str, Episode] = {}
        self._changed: dict[str, None] = {}  # an ordered set: fingerprints to persist
        self._by_type: dict[str, dict[str, None]] = {}
        """Event type -> fingerprints of its live episodes: a sweep visits one type's only."""

    def step(self, fresh: Episode, now_ms: int, fp: str | None = None) -> list[Alert]:
        """Fold a new evaluation into its fingerprint's episode; return the messages it causes.

        Args:
            fresh: the evaluation, shaped as the episode that would start now.
            now_ms: stream time of the evaluation.
            fp: ``fresh``'s fingerprint, when the caller has it already.
        """
        fp = fp or fingerprint(fresh.rule, fresh.labels)
        ep = self.episodes.get(fp)
        if ep is not None:
            return self.advance(ep.observe(fresh), now_ms, fp)
        if not fresh.holds(now_ms) and fresh.hold_until_ms is None:
            return []
        # An immediate alert whose hold already passed (its partition lags) still fires and
        # then resolves at once, so each qualifying event yields the same pair on every run.
        return self._settle(fresh, now_ms, fp, [fresh.alert(fp, "firing")])

    def advance(self, ep: Episode, now_ms: int, fp: str) -> list[Alert]:
        """:meth:`step` for a live episode the caller already merged its evaluation into.

        ``ep`` is what ``observe`` would give: the engine builds it in one go for a series whose
        episode is live, the common case under a sustained burst.
        """
        out: list[Alert] = []
        due = self.repeat_ms is not None and now_ms - ep.last_sent_ms >= self.repeat_ms
        if due and ep.holds(now_ms):
            ep = ep.replace(last_sent_ms=now_ms, repeats=ep.repeats + 1)
            out.append(ep.alert(fp, "firing"))
        return self._settle(ep, now_ms, fp, out)

    def _settle(self, ep: Episode, now_ms: int, fp: str, out: list[Alert]) -> list[Alert]:
        self._changed[fp] = None
        if ep.holds(now_ms):
            if fp not in self.episodes:
                self._index(fp, ep)
            self.episodes[fp] = ep
            return out
        self._drop(fp)  # absent when it fired and ended in this one step
        if ep.hold_until_ms is not None:
            ended = ep.replace(summary=f"{ep.summary}; resolved: hold ended")
            out.append(ended.alert(fp, "resolved", ends_ms=ep.hold_until_ms))
        else:
            out.append(ep.alert(fp, "resolved", ends_ms=now_ms))
        return out

    def touch(self, fp: str, now_ms: int) -> list[Alert]:
        """Re-evaluate a held episode at ``now_ms`` with nothing new observed: :meth:`step`.

        The common case, still held and no repeat due, only records the evaluation time.
        """
        ep = self.episodes[fp]
        repeat_due = self.repeat_ms is not None and now_ms - ep.last_sent_ms >= self.repeat_ms
        if ep.holds(now_ms) and not repeat_due:
            # Only the evaluation time moved: not a change worth persisting (a restored
            # episode evaluated again at this time reaches the same result).
            self.episodes[fp] = ep.replace(last_eval_ms=now_ms)
            return []
        return self.step(ep.replace(last_eval_ms=now_ms), now_ms, fp)

    def end(self, fp: str, now_ms: int, why: str) -> Alert:
        """Resolve an episode unconditionally (its rule is gone), ``why`` going in the summary."""
        ep = self.episodes[fp]
        self._drop(fp)
        self._changed[fp] = None
        ended = ep.replace(last_eval_ms=now_ms, summary=f"{ep.summary}; {why}")
        return ended.alert(fp, "resolved", ends_ms=now_ms)

    def take_changed(self) -> list[str]:
        """Fingerprints of the episodes changed since the last call (started, moved or ended).

        The worker asks after every record but persists one state per episode per batch: it
        reads each state once, when the batch ends (:meth:`episode_state`; None once ended).
        """
        changed = list(self._changed)
        self._changed.clear()
        return changed

    def _index(self, fp: str, ep: Episode) -> None:
        self._by_type.setdefault(ep.labels["event_type"], {})[fp] = None

    def _drop(self, fp: str) -> None:
        ep = self.episodes.pop(fp, None)
        if ep is not None:
            self._by_type.get(ep.labels["event_type"], {}).pop(fp, None)

    def ordered(
        self, where: Callable[[str, str], bool] | None = None, event_type: str | None = None
    ) -> list[tuple[str, Episode]]:
        """The episodes, by start then fingerprint: the same order on every run.

        Args:
            where: ``(region, event_type) -> bool`` to choose episodes; None: all of them.
            event_type: only episodes of this event type (looked up, not scanned for).
        """
        episodes = self.episodes
        if event_type is None:
            pairs = list(episodes.items())
        else:
            pairs = [(fp, episodes[fp]) for fp in self._by_type.get(event_type, ())]
        chosen = [
            (fp, ep)
            for fp, ep in pairs
            if where is None or where(ep.labels["region"], ep.labels["event_type"])
        ]
        return sorted(chosen, key=lambda item: (item[1].starts_ms, item[0]))

    def active(self) -> list[Alert]:
        """A ``firing`` alert for every episode, as last evaluated."""
        return [ep.alert(fp, "firing") for fp, ep in self.ordered()]

    def episode_state(self, fp: str) -> dict[str, Any] | None:
        """One episode as plain JSON data (a :meth:`state` entry), or None once it has ended."""
        ep = self.episodes.get(fp)
        return None if ep is None else ep.to_state()

    def state(self) -> dict[str, dict[str, Any]]:
        """Every episode as plain JSON data: fingerprint -> episode."""
        return {fp: ep.to_state() for fp, ep in sorted(self.episodes.items())}

    def restore(self, state: Mapping[str, Mapping[str, Any]]) -> None:
        """Replace every episode with those of a :meth:`state` result.

        Raises:
            ValueError: an entry is malformed, or its key is not its episode's fingerprint.
        """
        episodes: dict[str, Episode] = {}
        for fp, data in state.items():
            ep = Episode.from_state(data)
            if fingerprint(ep.rule, ep.labels) != fp:
                raise ValueError(f"state entry {fp!r} is not the fingerprint of its labels")
            episodes[fp] = ep
        self.episodes = episodes
        self._by_type = {}
        for fp, ep in episodes.items():
            self._index(fp, ep)
        self._changed.clear()
