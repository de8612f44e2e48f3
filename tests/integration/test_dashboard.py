"""The dashboard in a real browser, against a real worker on the session's Kafka broker.

Debian's chromium (``apt-get install chromium``; ``DISRUPTFEED_CHROMIUM`` overrides the path),
driven by Playwright's Python API; Playwright's own browser builds are never used. A person signs
in, sees the counts change and an alert fire without reloading, sees the page say the stream is
down while the worker is stopped, and sees it reconnect and carry on when the worker is back.
Screenshots at 1280x800 and 375x800 go to tests/artifacts/ (ignored by git); their paths are
printed.

Also, without a browser: the worker's ``/alerts/stream`` sends heartbeats, holds each token to
``DISRUPTFEED_HTTP_MAX_STREAMS_PER_TOKEN`` streams, and does not hold up the worker's shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import re
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from disruptfeed.auth import SESSION_COOKIE
from disruptfeed.settings import Settings
from producers import FeedProducer
from schemas import EventBase
from tests.conftest import SettingsFactory
from tests.factories import T0, account
from tests.integration.helpers import ng_burst_rules
from tests.integration.worker import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",  # the tests run as root
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SECONDS = 1_000  # Playwright's timeouts are in milliseconds
STALE = re.compile(r"\bstale\b")

RULES = ng_burst_rules(3)


def chromium() -> str:
    """Debian's chromium, or the one DISRUPTFEED_CHROMIUM names; fail in one line without it."""
    path = os.environ.get("DISRUPTFEED_CHROMIUM") or shutil.which("chromium")
    if not path or not os.access(path, os.X_OK):
        pytest.fail(
            "no chromium for the dashboard's browser test: apt-get install chromium "
            "(or set DISRUPTFEED_CHROMIUM to a Chromium binary)",
            pytrace=False,
        )
    return path


@contextlib.asynccontextmanager
async def launched_browser() -> AsyncIterator[Browser]:
    """Chromium under Playwright; fails the test (not a fixture error) when there is none."""
    executable = chromium()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()


async def _publish(settings: Settings, events: list[EventBase]) -> None:
    async with FeedProducer(settings) as producer:
        outcomes = await producer.publish_many(events)
    assert all(o.ok and not o.duplicate for o in outcomes), outcomes


async def _screenshot(page: Page, name: str, shots: list[Path], *, full: bool = False) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    await page.screenshot(path=str(path), full_page=full)
    shots.append(path)


async def test_a_person_watches_counts_and_alerts_live_through_a_worker_restart(
    make_settings: SettingsFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with launched_browser() as browser:
        await _watch(browser, make_settings, tmp_path, capsys)


async def _watch(
    browser: Browser,
    make_settings: SettingsFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = await make_settings()
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    worker = WorkerProcess(settings, tmp_path / "worker", rules)
    worker.start()
    shots: list[Path] = []
    try:
        await asyncio.to_thread(worker.wait_healthy)
        base = f"http://127.0.0.1:{worker.port}"
        context = await browser.new_context(viewport={"width": 1280, "height": 800})
        page = await context.new_page()
        page.set_default_timeout(60 * SECONDS)

        # Signing in: the page sends a browser without a session to the form.
        await page.goto(f"{base}/")
        await expect(page).to_have_url(f"{base}/login")
        await page.fill("#token", worker.token)
        await page.click("button[type=submit]")
        await expect(page).to_have_url(f"{base}/")
        [cookie] = [c for c in await context.cookies() if c["name"] == SESSION_COOKIE]
        assert cookie["httpOnly"]
        assert cookie["sameSite"] == "Strict"
        assert worker.token not in cookie["value"]
        conn = page.locator("#conn")
        await expect(conn).to_have_attribute("data-state", "live")
        await expect(page.locator("#counts-empty")).to_be_visible()

        # Two NG events: the counts change on the page, no alert yet.
        await _publish(settings, [account("NG", minutes=0), account("NG", minutes=1)])
        ng_1h = page.locator('#counts tr[data-region="NG"] td[data-window="1h"]')
        await expect(ng_1h).to_have_text("2")
        await expect(page.locator("#firing-empty")).to_be_visible()
        # A third in the hour: the rule fires, in the firing list and in the live feed.
        await _publish(settings, [account("NG", minutes=2)])
        await expect(ng_1h).to_have_text("3")
        firing = page.locator('#firing li[data-region="NG"]')
        await expect(firing).to_contain_text("ng-burst")
        await expect(firing).to_contain_text("critical")
        await expect(
            page.locator('#feed li[data-status="firing"][data-region="NG"]')
        ).to_have_count(1)
        await expect(page.locator("#firing-count")).to_have_text("1")
        await expect(page.locator('#chart g[data-region="NG"]')).to_have_count(1)
        await _screenshot(page, "dashboard-1280x800.png", shots)

        # A phone: one column, nothing wider than the screen.
        await page.set_viewport_size({"width": 375, "height": 800})
        # The chart is drawn again for its new width (its text keeps its size).
        await page.wait_for_function("document.getElementById('chart').getAttribute('width') < 375")
        await expect(page.locator('#chart g[data-region="NG"]')).to_have_count(1)
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, f"the page is {width}px wide on a 375px screen"
        await _screenshot(page, "dashboard-375x800.png", shots)
        await _screenshot(page, "dashboard-375-full.png", shots, full=True)
        await page.set_viewport_size({"width": 1280, "height": 800})

        # The worker stops: the page says the stream is down, and keeps what it had.
        await asyncio.to_thread(worker.stop)
        await expect(conn).to_have_attribute("data-state", "disconnected")
        await expect(conn).to_contain_text("Retrying in")
        await expect(page.locator("#updated")).to_have_class(STALE)
        await expect(ng_1h).to_have_text("3")
        await _screenshot(page, "dashboard-disconnected-1280x800.png", shots)
        await page.set_viewport_size({"width": 375, "height": 800})
        await _screenshot(page, "dashboard-disconnected-375x800.png", shots)
        await page.set_viewport_size({"width": 1280, "height": 800})

        # It comes back: the page reconnects by itself, and the stream carries on.
        worker.start()
        await asyncio.to_thread(worker.wait_healthy)
        await expect(conn).to_have_attribute("data-state", "live", timeout=90 * SECONDS)
        await expect(page.locator("#updated")).not_to_have_class(STALE)
        # Three hours on, NG's last hour holds one event: the alert resolves, live.
        later = account("NG", minutes=180)
        assert later.occurred_at < dt.datetime.now(dt.UTC)
        assert later.occurred_at > T0
        await _publish(settings, [later])
        await expect(
            page.locator('#feed li[data-status="resolved"][data-region="NG"]')
        ).to_have_count(1)
        await expect(page.locator("#firing-empty")).to_be_visible()
        await expect(ng_1h).to_have_text("1")
        await expect(
            page.locator('#counts tr[data-region="NG"] td[data-window="total"]')
        ).to_have_text("4")
        await context.close()
    finally:
        worker.stop()
        with capsys.disabled():
            for shot in shots:
                print(f"\ndashboard screenshot: {shot}")


async def test_the_worker_alert_stream_beats_limits_tokens_and_ends_on_shutdown(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = await make_settings()
    worker = WorkerProcess(
        settings,
        tmp_path / "worker",
        env={
            "DISRUPTFEED_HTTP_MAX_STREAMS_PER_TOKEN": "1",
            "DISRUPTFEED_SSE_HEARTBEAT_SECONDS": "1",
        },
    )
    worker.start()
    try:
        await asyncio.to_thread(worker.wait_healthy)
        auth = {"Authorization": f"Bearer {worker.token}"}
        base = f"http://127.0.0.1:{worker.port}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            assert (await http.get("/alerts/stream")).status_code == 401
            async with http.stream("GET", "/alerts/stream", headers=auth) as stream:
                assert stream.status_code == 200
                assert stream.headers["content-type"] == "text/event-stream"
                lines = stream.aiter_lines()
                assert await anext(lines) == "retry: 2000"
                while await anext(lines) != ": heartbeat":
                    pass
                refused = await http.get("/alerts/stream", headers=auth)
                assert refused.status_code == 429
                assert "DISRUPTFEED_HTTP_MAX_STREAMS_PER_TOKEN" in refused.json()["error"]
                # Stopping the worker ends the open stream at once, not after aiohttp's 60 s.
                started = time.monotonic()
                await asyncio.to_thread(worker.stop)
                took = time.monotonic() - started
                assert took < 20, f"the worker took {took:.1f}s to stop with a stream open"
                async for _ in lines:  # ends: the server closed it
                    pass
    finally:
        worker.stop()
