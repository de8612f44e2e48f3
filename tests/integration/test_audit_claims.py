"""'audit reports' against the real broker: the sample's claims hold, forged ones do not."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable

import pytest
from click.testing import CliRunner, Result

from disruptfeed.cli import main
from disruptfeed.sample import build_sample
from disruptfeed.settings import Settings
from producers import FeedProducer
from schemas import EventBase, ReportReleased
from tests.factories import report

pytestmark = pytest.mark.integration

SettingsFactory = Callable[..., Awaitable[Settings]]


async def _publish(settings: Settings, events: list[EventBase]) -> None:
    async with FeedProducer(settings) as producer:
        assert all(o.ok for o in await producer.publish_many(events))


def _cli(settings: Settings) -> Result:
    return CliRunner().invoke(main, ["audit", "reports"], obj=settings, catch_exceptions=False)


async def test_the_sample_reports_claims_hold_and_forged_ones_are_listed(
    make_settings: SettingsFactory,
) -> None:
    settings = await make_settings()
    sample = [e for e in build_sample() if e.type != "account.disrupted"]
    await _publish(settings, sample)
    reports = [e for e in sample if isinstance(e, ReportReleased)]
    claims = sum(len(r.networks) for r in reports) + sum(1 for r in reports if r.cumulative_claims)
    assert claims > len(reports)  # the sample has cumulative claims to check

    result = await asyncio.to_thread(_cli, settings)
    assert result.exit_code == 0, result.output
    assert f"no mismatch: {len(reports)} reports, {claims} claims checked" in result.output

    latest = max(reports, key=lambda r: r.published)
    forged = report(
        report_id="forged-report",
        source=latest.source,
        published=latest.published + dt.timedelta(days=1),
        networks=("no-such-network",),
        cumulative_claims=("more than 500 networks disrupted since 2024",),
    )
    await _publish(settings, [forged])
    result = await asyncio.to_thread(_cli, settings)
    assert result.exit_code == 1
    assert f"MISMATCHES: 2 of {len(reports) + 1} reports" in result.output
    assert "forged-report: lists network no-such-network, which no NetworkIdentified" in (
        result.output
    )
    assert "forged-report: claims 'more than 500 networks'; the history has" in result.output
