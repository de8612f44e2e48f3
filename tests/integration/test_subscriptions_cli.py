"""`disruptfeed subscriptions ...` against the real broker, as a person would use it."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable

import pytest
from click.testing import CliRunner, Result

from disruptfeed.cli import main
from disruptfeed.settings import Settings

pytestmark = pytest.mark.integration

SettingsFactory = Callable[..., Awaitable[Settings]]


def _settings(make: SettingsFactory, **overrides: object) -> Settings:
    async def made() -> Settings:
        return await make(**overrides)

    return asyncio.run(made())


def _cli(settings: Settings, *args: str) -> Result:
    return CliRunner().invoke(main, list(args), obj=settings, catch_exceptions=False)


def test_the_whole_life_of_a_subscription(make_settings: SettingsFactory) -> None:
    settings = _settings(make_settings, webhook_allow_private=True)
    created = _cli(
        settings,
        *("subscriptions", "create", "http://127.0.0.1:9/hook", "--region", "RU"),
        *("--region", "CN", "--state", "firing", "--min-severity", "warning"),
    )
    assert created.exit_code == 0, created.output
    secret = re.search(r"(whsec_\S+)", created.output)
    sub_id = re.search(r"(sub_[0-9a-f]{24})", created.output)
    assert secret is not None
    assert sub_id is not None
    assert "regions=RU,CN" in created.output

    listed = _cli(settings, "subscriptions", "list", "--json")
    assert listed.exit_code == 0
    (row,) = json.loads(listed.output)
    assert row["id"] == sub_id[1]
    assert row["filter"]["min_severity"] == "warning"
    assert "whsec_" not in listed.output

    assert "is paused" in _cli(settings, "subscriptions", "pause", sub_id[1]).output
    shown = json.loads(_cli(settings, "subscriptions", "show", sub_id[1], "--json").output)
    assert shown["state"] == "paused"
    assert shown["deliveries"]["delivered"] == 0
    assert "is active" in _cli(settings, "subscriptions", "resume", sub_id[1]).output

    rotated = _cli(settings, "subscriptions", "rotate-secret", sub_id[1])
    new = re.search(r"(whsec_\S+)", rotated.output)
    assert new is not None
    assert new[1] != secret[1]
    assert "no delivery attempts" in _cli(settings, "subscriptions", "deliveries", sub_id[1]).output

    assert "deleted" in _cli(settings, "subscriptions", "delete", sub_id[1]).output
    gone = _cli(settings, "subscriptions", "show", sub_id[1])
    assert gone.exit_code == 4
    assert "no subscription" in gone.output


def test_bad_input_gets_a_reason_and_no_subscription(make_settings: SettingsFactory) -> None:
    settings = _settings(make_settings)
    bad_region = _cli(settings, "subscriptions", "create", "https://x.example/h", "--region", "XX")
    assert bad_region.exit_code == 4
    assert "ISO 3166" in bad_region.output
    private = _cli(settings, "subscriptions", "create", "http://10.0.0.1/h")
    assert private.exit_code == 4
    assert "DISRUPTFEED_WEBHOOK_ALLOW_PRIVATE" in private.output
    bad_url = _cli(settings, "subscriptions", "create", "ftp://files.example/x")
    assert bad_url.exit_code == 4
    assert "http" in bad_url.output
    assert "no subscriptions" in _cli(settings, "subscriptions", "list").output
