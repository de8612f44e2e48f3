"""Account sums from running totals equal the plain sums, whatever order events arrive in.

:class:`streams.CountStore` answers ``/stats``' account sums from running totals rather than by
summing the retained events (see ``python -m tests.view_lag`` for what that cost); these tests
hold the two to the same answers through out-of-order and late events, pruning and restores.
"""

from __future__ import annotations

import bisect

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams import Counted, CountStore
from streams._windows import WINDOWS

pytestmark = pytest.mark.unit

H = 3_600_000
T0 = 1_790_000_000_000
SOURCES = ("t.account-disrupted:0", "t.account-disrupted:1")
REGIONS = {"t.account-disrupted:0": ("RU", "CN"), "t.account-disrupted:1": ("IR",)}


def _plain_sum(store: CountStore, region: str, size: int, now: int) -> int:
    """What the sum was before running totals: every retained event in the window, added up."""
    series = store._series.get((region, "account.disrupted"))
    if series is None:
        return 0
    lo = bisect.bisect_right(series.times, now - size)
    hi = bisect.bisect_right(series.times, now)
    return sum(series.accounts[lo:hi])


events = st.lists(
    st.tuples(
        st.sampled_from(SOURCES),
        st.integers(0, 1),  # which of the source's regions
        # Forward or back in time (back: within grace, or late): by hours, or by days, so
        # that old events leave the retained series.
        st.one_of(
            st.integers(-3 * H, 3 * H),
            st.integers(-20 * 24 * H, -3 * H),
            st.sampled_from([H * 24 * days for days in (1, 3, 6, 8, 15)]),
        ),
        st.integers(1, 10_000_000),
    ),
    max_size=300,
)


def _check(store: CountStore) -> None:
    now = store.now_ms
    for region in ("RU", "CN", "IR"):
        for size in (*WINDOWS.values(), 30 * 24 * H):
            for at in (now, now - 2 * H, now - 8 * 24 * H, now + H):
                want = _plain_sum(store, region, size, at)
                assert store.accounts(region, "account.disrupted", size, at) == want


@given(events, st.integers(0, 2 * H), st.sampled_from([WINDOWS["7d"], 2 * WINDOWS["7d"]]))
def test_running_totals_equal_plain_sums(
    steps: list[tuple[str, int, int, int]], grace: int, retain: int
) -> None:
    store = CountStore(grace_ms=grace, retain_ms=retain)
    clock = {source: T0 for source in SOURCES}
    added: list[Counted] = []
    for i, (source, which, delta, accounts) in enumerate(steps):
        regions = REGIONS[source]
        clock[source] = max(T0, clock[source] + delta) if delta > 0 else clock[source]
        occurred = clock[source] + min(delta, 0)
        counted = Counted(
            "account.disrupted",
            regions[which % len(regions)],
            occurred,
            accounts,
            store.classify(source, occurred),
            source,
        )
        store.add(counted)
        added.append(counted)
        if i % 37 == 0:
            _check(store)  # reads in between leave totals to be settled, then more arrive
        if i % 13 == 12:
            store.prune()
    _check(store)
    # A store rebuilt from the same events (in another order, as a restore reads them) agrees.
    rebuilt = CountStore(grace_ms=grace, retain_ms=retain)
    rebuilt.restore(sorted(added, key=lambda c: (c.accounts, c.occurred_ms)))
    _check(rebuilt)


def test_a_read_between_out_of_order_events_sees_each_of_them() -> None:
    store = CountStore(grace_ms=H)
    for minutes, accounts in ((0, 5), (30, 7), (10, 100), (20, 1_000), (40, 3)):
        store.add(Counted("account.disrupted", "RU", T0 + minutes * 60_000, accounts, False, "s:0"))
        assert store.accounts("RU", "account.disrupted", H) == _plain_sum(
            store, "RU", H, store.now_ms
        )
    assert store.accounts("RU", "account.disrupted", H) == 1_115
    # Windows that hold nothing, or end before the first event.
    assert store.accounts("RU", "account.disrupted", 1, T0 - 1) == 0
    assert store.accounts("RU", "account.disrupted", 60_000, T0 + 5 * 60_000) == 0
    assert store.accounts("XX", "account.disrupted", H) == 0
