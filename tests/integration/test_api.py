"""The dispatcher's HTTP API: bearer tokens on every route but /health, subscriptions over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import orjson
import pytest
from aiohttp import web

from consumers._api import build_app
from disruptfeed.settings import Settings
from tests.integration.delivery import running_dispatcher
from tests.integration.helpers import serving

pytestmark = pytest.mark.integration

SettingsFactory = Callable[..., Awaitable[Settings]]
TOKENS = "old-token-1234,new-token-5678"

ROUTES = [
    ("GET", "/subscriptions"),
    ("POST", "/subscriptions"),
    ("GET", "/subscriptions/sub_000000000000000000000000"),
    ("DELETE", "/subscriptions/sub_000000000000000000000000"),
    ("POST", "/subscriptions/sub_000000000000000000000000/pause"),
    ("POST", "/subscriptions/sub_000000000000000000000000/rotate-secret"),
    ("GET", "/subscriptions/sub_000000000000000000000000/deliveries"),
    ("GET", "/stream/alerts"),
    ("GET", "/stream/events"),
]


async def test_every_route_but_health_needs_a_token(make_settings: SettingsFactory) -> None:
    settings = await make_settings(api_token=TOKENS)
    async with running_dispatcher(settings) as dispatcher, serving(settings, dispatcher) as http:
        assert (await http.get("/health")).status_code == 200
        for method, path in ROUTES:
            for headers in (
                {},
                {"Authorization": "Bearer wrong"},
                {"Authorization": "old-token-1234"},
            ):
                response = await http.request(method, path, headers=headers)
                assert response.status_code == 401, (method, path, headers)
                assert response.json()["error"] == "unauthorized"
                assert "token-" not in response.text  # never echoes a token
        # Either token of a rotation works.
        for token in TOKENS.split(","):
            got = await http.get("/subscriptions", headers={"Authorization": f"Bearer {token}"})
            assert got.status_code == 200


async def test_subscriptions_over_http_never_show_secrets_twice(
    make_settings: SettingsFactory,
) -> None:
    settings = await make_settings(api_token="t0ken-for-this-test")
    auth = {"Authorization": "Bearer t0ken-for-this-test"}
    async with running_dispatcher(settings) as dispatcher, serving(settings, dispatcher) as http:
        refused = await http.post(
            "/subscriptions", json={"url": "http://127.0.0.1:9/hook"}, headers=auth
        )
        assert refused.status_code == 422
        assert refused.json()["field"] == "url"
        bad = await http.post(
            "/subscriptions", json={"url": "ftp://x", "regions": ["XX"]}, headers=auth
        )
        assert bad.status_code == 400
        assert {p["field"] for p in bad.json()["problems"]} >= {"url"}
        not_json = await http.post("/subscriptions", content=b"{", headers=auth)
        assert not_json.status_code == 400

    # The CRUD half runs where loopback endpoints are allowed (there is no public DNS here).
    allowed = settings.model_copy(update={"webhook_allow_private": True})
    async with running_dispatcher(allowed) as dispatcher, serving(allowed, dispatcher) as http:
        created = await http.post(
            "/subscriptions",
            json={"url": "http://127.0.0.1:9/hook", "regions": ["RU"], "states": ["firing"]},
            headers=auth,
        )
        assert created.status_code == 201, created.text
        sub = created.json()["subscription"]
        secret = sub["secret"]
        assert secret.startswith("whsec_")
        listing = await http.get("/subscriptions", headers=auth)
        shown = await http.get(f"/subscriptions/{sub['id']}", headers=auth)
        for response in (listing, shown):
            assert response.status_code == 200
            assert secret not in response.text
            assert "whsec_" not in response.text
        paused = await http.post(f"/subscriptions/{sub['id']}/pause", headers=auth)
        assert paused.json()["subscription"]["state"] == "paused"
        rotated = await http.post(f"/subscriptions/{sub['id']}/rotate-secret", headers=auth)
        assert rotated.json()["subscription"]["secret"] not in (secret, None)
        deliveries = await http.get(f"/subscriptions/{sub['id']}/deliveries", headers=auth)
        assert deliveries.json() == {"deliveries": []}
        assert (await http.delete(f"/subscriptions/{sub['id']}", headers=auth)).status_code == 204
        missing = await http.get(f"/subscriptions/{sub['id']}", headers=auth)
        assert missing.status_code == 404


async def test_alerts_tail_follows_the_live_stream_for_people(
    make_settings: SettingsFactory,
) -> None:
    import datetime as dt
    import os
    import sys

    from tests.factories import make_alert
    from tests.integration.delivery import publish_alerts

    settings = await make_settings(api_token="tail-token")
    since = dt.datetime.now(dt.UTC).isoformat()
    wanted = [make_alert("RU", n=1), make_alert("RU", n=2, status="resolved")]
    await publish_alerts(settings, [*wanted, make_alert("CN", n=3)])
    async with running_dispatcher(settings) as dispatcher:
        runner = web.AppRunner(build_app(settings, dispatcher), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        env = {k: v for k, v in os.environ.items() if not k.startswith("DISRUPTFEED_")}
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "disruptfeed", "alerts", "tail", "--json", "--region", "RU"),
            *("--since", since, "--url", f"http://127.0.0.1:{port}", "--token", "tail-token"),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            assert proc.stdout is not None
            lines = [await asyncio.wait_for(proc.stdout.readline(), 60) for _ in wanted]
        finally:
            proc.terminate()
            await proc.wait()
            await runner.cleanup()
    got = [orjson.loads(line)["alert_id"] for line in lines]
    assert sorted(got) == sorted(str(a.alert_id) for a in wanted)
