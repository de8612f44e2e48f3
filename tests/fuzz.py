"""Hypothesis strategies shared by the property-based tests (``test_fuzz_*.py``).

Valid events are built field by field from the models' own constraints, so that a strategy
that drifts from the schema fails the round-trip test instead of quietly testing less.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, get_args

from hypothesis import settings
from hypothesis import strategies as st

from schemas import (
    ISO_3166_ALPHA2,
    UNKNOWN_REGION,
    AccountDisrupted,
    Activity,
    Actor,
    Attribution,
    Confidence,
    EventBase,
    NetworkIdentified,
    ReportReleased,
)


def examples(share: float) -> int:
    """A share of the profile's ``max_examples``, for targets slower per example."""
    return max(10, int(settings().max_examples * share))


REGIONS = (*sorted(ISO_3166_ALPHA2), UNKNOWN_REGION)
regions = st.sampled_from(REGIONS)
short_text = st.text(min_size=1, max_size=256)
texts = st.text(min_size=1, max_size=2_000)
text_lists = st.lists(short_text, max_size=8).map(tuple)
_SLUG_FIRST = "abcdefghijklmnopqrstuvwxyz0123456789"
slugs = st.builds(
    str.__add__, st.sampled_from(_SLUG_FIRST), st.text(_SLUG_FIRST + "._-", max_size=127)
)
"""The Slug pattern, ^[a-z0-9][a-z0-9._-]{0,127}$ (built directly: from_regex is slower)."""
offsets = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
    lambda minutes: dt.timezone(dt.timedelta(minutes=minutes))
)
"""RFC 3339 offsets: whole minutes (the models refuse the others)."""
aware_datetimes = st.datetimes(
    min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30), timezones=offsets
)
_WHITESPACE = "".join(chr(c) for c in range(0x110000) if chr(c).isspace())
urls = st.builds(
    "{}://{}".format,
    st.sampled_from(["http", "https"]),
    st.text(
        st.characters(exclude_categories=["Cs"], exclude_characters=_WHITESPACE),
        min_size=1,
        max_size=200,
    ),
)
"""The report URL pattern, ^https?://[^\\s]+$."""

actors = st.builds(
    Actor,
    region=regions,
    name=st.none() | short_text,
    attribution=st.sampled_from(get_args(Attribution)),
    confidence=st.sampled_from(get_args(Confidence)),
)
_envelope: dict[str, Any] = {
    "event_id": st.uuids(),
    "occurred_at": aware_datetimes,
    "recorded_at": aware_datetimes,
    "source": short_text,
    "actor": actors,
    "synthetic": st.booleans(),
}
activities = st.sampled_from(get_args(Activity))

events: st.SearchStrategy[EventBase] = st.one_of(
    st.builds(
        AccountDisrupted,
        **_envelope,
        network_id=slugs,
        platform=short_text,
        accounts=st.integers(min_value=1, max_value=10_000_000),
        activity=activities,
        reason=texts,
    ),
    st.builds(
        NetworkIdentified,
        **_envelope,
        network_id=slugs,
        operation_name=short_text,
        activity=activities,
        targets=text_lists,
        platforms=text_lists,
        techniques=text_lists,
        language=st.none() | short_text,
    ),
    st.builds(
        ReportReleased,
        **_envelope,
        report_id=slugs,
        title=texts,
        url=urls,
        published=st.dates(),
        date_precision=st.sampled_from(["day", "month"]),
        networks=st.lists(slugs, max_size=8).map(tuple),
        cumulative_claims=text_lists,
    ),
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
"""Any JSON value (integers of any size: write them with the standard library's json)."""
