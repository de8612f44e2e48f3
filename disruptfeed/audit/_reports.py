"""``audit reports``: each ``ReportReleased`` event's claims, held against the history.

Two kinds of claim are checked:

- *networks covered*: every network id a report lists must have a ``NetworkIdentified``
  event in the history (any time: a report may describe a network identified later);
- *cumulative counts* in ``cumulative_claims``, such as "more than 20 operations ... disrupted
  since ..." or "over 40 networks": the distinct networks its publisher (the report's
  ``source``) had identified by the report's publication date must satisfy the bound. A claim
  with no recognisable count is listed as not checkable, which is not a mismatch.
"""

from __future__ import annotations

__all__ = ["ReportCheck", "check_reports"]

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from schemas import EventBase, NetworkIdentified, ReportReleased

_CLAIM: Final = re.compile(
    r"\b(?P<bound>more than|over|at least|exactly|nearly|almost|about)?\s*"
    r"(?P<n>\d[\d,]*)\s+(?:\w+\s+){0,3}?(?:operations|networks|campaigns)\b",
    re.IGNORECASE,
)


@dataclass(slots=True)
class ReportCheck:
    """What one report claims that the history does not bear out."""

    report_id: str
    published: dt.date
    mismatches: list[str] = field(default_factory=list)
    checked: int = 0
    uncheckable: list[str] = field(default_factory=list)


def _holds(bound: str, claimed: int, found: int) -> bool:
    if bound in ("more than", "over"):
        return found > claimed
    if bound == "at least":
        return found >= claimed
    if bound in ("nearly", "almost"):
        return found <= claimed
    return found == claimed  # a bare or "exactly" number; "about" is read as exact too


def check_reports(events: Iterable[EventBase]) -> list[ReportCheck]:
    """One check per report, in publication order (then report id)."""
    reports: list[ReportReleased] = []
    first_seen: dict[str, dict[str, dt.date]] = {}  # source -> network id -> first date
    known: set[str] = set()
    for event in events:
        if isinstance(event, ReportReleased):
            reports.append(event)
        elif isinstance(event, NetworkIdentified):
            known.add(event.network_id)
            day = event.occurred_at.date()
            by_source = first_seen.setdefault(event.source, {})
            if event.network_id not in by_source or day < by_source[event.network_id]:
                by_source[event.network_id] = day
    out = []
    for report in sorted(reports, key=lambda r: (r.published, r.report_id)):
        check = ReportCheck(report.report_id, report.published)
        for network in report.networks:
            check.checked += 1
            if network not in known:
                check.mismatches.append(
                    f"lists network {network}, which no NetworkIdentified event identifies"
                )
        for claim in report.cumulative_claims:
            match = _CLAIM.search(claim)
            if match is None:
                check.uncheckable.append(claim)
                continue
            check.checked += 1
            bound = (match["bound"] or "exactly").lower()
            claimed = int(match["n"].replace(",", ""))
            identified = first_seen.get(report.source, {})
            found = sum(1 for day in identified.values() if day <= report.published)
            if not _holds(bound, claimed, found):
                check.mismatches.append(
                    f"claims {match[0]!r}; the history has {found} networks identified by "
                    f"{report.source} up to {report.published.isoformat()}"
                )
        out.append(check)
    return out
