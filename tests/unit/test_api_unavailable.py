"""The dispatcher's API when its Kafka cluster does not answer: 503 with Retry-After, never 500.

No broker is started: the bootstrap address is a free local port nothing listens on, so every
route that reads Kafka meets the refusal a broker that is down gives. (A broker that answers but
refuses the server's credentials is tests/integration/test_security.py's.)
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from consumers._api import build_app
from consumers._dispatcher import Dispatcher
from consumers._registry import SubscriptionAdmin
from consumers._webhooks import new_secret
from disruptfeed.broker import free_port
from disruptfeed.settings import Settings
from schemas._subscriptions import SubscriptionRecord

pytestmark = pytest.mark.unit

TOKEN = "unavailable-token-1234"


class _Producer:
    """The admin's producer: its writes are not what this test is about."""

    async def flush(self) -> None:
        return None


async def test_routes_that_read_kafka_answer_503_while_the_broker_is_down(tmp_path: Path) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    settings = Settings(bootstrap_servers=bootstrap, api_token=SecretStr(TOKEN), data_dir=tmp_path)
    dispatcher = Dispatcher(settings)
    dispatcher.admin = SubscriptionAdmin(settings, dispatcher.registry, _Producer())
    now = dt.datetime.now(dt.UTC)
    sub = SubscriptionRecord(
        id="sub_" + "0" * 24,
        kind="webhook",
        url="https://hooks.example.org/alerts",
        secret=new_secret(),
        created_at=now,
        updated_at=now,
    )
    dispatcher.registry.apply_local(sub)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with TestClient(TestServer(build_app(settings, dispatcher))) as client:
        for path in (f"/subscriptions/{sub.id}/deliveries", "/stream/alerts", "/stream/events"):
            response = await client.get(path, headers=auth)
            assert response.status == 503, (path, await response.text())
            assert response.headers["Retry-After"] == "30"
            error = (await response.json())["error"]
            assert bootstrap in error, (path, error)  # which broker did not answer
