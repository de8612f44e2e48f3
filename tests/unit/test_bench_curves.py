"""``disruptfeed bench --curves``: its workloads, its table and plot, and its options."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from disruptfeed.bench._curves import curves_table, plot_curves
from disruptfeed.bench._events import rate_events, region_events
from disruptfeed.cli import main

pytestmark = pytest.mark.unit

MEASURED = {
    "processor-regions": {
        "x_label": "active regions",
        "y_label": "events/s",
        "points": [
            {"x": 10.0, "events_per_s": 20000.0, "state_mb": 3.0},
            {"x": 250.0, "events_per_s": 15000.0, "state_mb": 9.5},
        ],
    },
    "replay-verify": {
        "x_label": "events of history",
        "y_label": "events/s",
        "points": [{"x": 10_000, "events_per_s": 7000.0, "seconds": 1.43}],
    },
    "pipeline-workers": {"x_label": "workers", "y_label": "events/s", "points": [],
                         "error": "the workers never all held partitions"},
}  # fmt: skip


def test_region_events_spread_evenly_over_that_many_regions() -> None:
    events = region_events(500, 50)
    regions = [e.region for e in events]
    assert len(set(regions)) == 50
    assert max(regions.count(r) for r in set(regions)) == 10
    times = [e.occurred_at for e in events]
    assert times == sorted(times)


def test_rate_events_hold_that_many_days_at_that_rate() -> None:
    events = rate_events(0.5, 0.1)
    assert len(events) == 4_320
    span = (events[-1].occurred_at - events[0].occurred_at).total_seconds()
    assert 0.9 * 43_200 < span < 1.1 * 43_200  # exponential gaps: about half a day


def test_the_table_has_a_row_per_point_and_says_what_was_not_measured() -> None:
    table = curves_table(MEASURED)
    assert "| 250 | 15,000 | 9.5 |" in table
    assert "| 10,000 | 7,000 | 1.43 |" in table
    assert "not measured: the workers never all held partitions" in table


def test_the_plot_is_a_png_with_every_curve(tmp_path: Path) -> None:
    path = tmp_path / "curves.png"
    plot_curves(MEASURED, path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width = int.from_bytes(data[16:20], "big")
    assert width > 3 * 400  # one panel per curve, side by side


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--plot", "x.png"], "--plot draws the curves: use it with --curves"),
        (["--curves", "--case", "feed-processor"], "it takes no --case"),
        (["--curves", "--plot", "/nonexistent/dir/x.png"], "no such directory /nonexistent/dir"),
    ],
)
def test_curves_options_are_checked_before_anything_starts(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["bench", *args])
    assert result.exit_code != 0
    assert message in result.output
