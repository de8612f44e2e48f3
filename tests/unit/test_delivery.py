"""Push delivery without a broker: signatures, the endpoint guard, filters, state, tokens."""

from __future__ import annotations

import datetime as dt
import time

import pytest
import standardwebhooks
from pydantic import ValidationError

from consumers._dispatch_state import Cursor, DispatchState, PendingDelivery, encode
from consumers._webhooks import (
    alertmanager_payload,
    check_endpoint,
    new_secret,
    parse_retry_after,
    sign,
    webhook_body,
    webhook_id,
)
from disruptfeed.auth import authorized
from disruptfeed.errors import EndpointRefusedError
from disruptfeed.settings import Settings
from schemas._subscriptions import AlertFilter, SubscriptionRecord
from tests.factories import make_alert

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def test_our_signature_is_what_standard_webhooks_verifies() -> None:
    secret = new_secret()
    body = webhook_body(make_alert(), "sub_" + "0" * 24, 3, NOW)
    stamp = int(time.time())
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(stamp),
        "webhook-signature": f"v1,{sign(secret, 'msg_1', stamp, body)}",
    }
    assert standardwebhooks.Webhook(secret).verify(body, headers)["sequence"] == 3
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(new_secret()).verify(body, headers)


def test_webhook_ids_are_stable_per_subscription_and_alert() -> None:
    alert = make_alert(n=1)
    assert webhook_id("sub_a", alert.alert_id) == webhook_id("sub_a", alert.alert_id)
    assert webhook_id("sub_a", alert.alert_id) != webhook_id("sub_b", alert.alert_id)
    assert webhook_id("sub_a", alert.alert_id) != webhook_id("sub_a", make_alert(n=2).alert_id)


def test_webhook_body_is_the_same_bytes_every_time() -> None:
    alert = make_alert()
    assert webhook_body(alert, "s", 1, NOW) == webhook_body(alert, "s", 1, NOW)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://10.0.0.8/",
        "http://172.16.3.4/",
        "http://192.168.1.1/",
        "http://169.254.169.254/",
        "http://[::1]/",
        "http://[fe80::1]/",
        "http://[fd12::1]/",
        "http://[::ffff:10.0.0.1]/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
        "http://metadata.google.internal/",
    ],
)
async def test_private_and_metadata_addresses_are_refused(url: str) -> None:
    with pytest.raises(EndpointRefusedError):
        await check_endpoint(url, allow_private=False)
    await check_endpoint(url, allow_private=True)  # the setting lets them through


async def test_public_addresses_pass_the_guard() -> None:
    await check_endpoint("https://93.184.215.14/hook", allow_private=False)
    await check_endpoint("http://[2606:4700::1111]/hook", allow_private=False)


def test_retry_after_takes_seconds_or_a_date() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Wed, 21 Oct 2026 07:28:00 GMT", now=1792567670.0) == 10.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_alert_filter() -> None:
    ru, cn = make_alert("RU", severity="warning"), make_alert("CN", severity="critical")
    assert AlertFilter().matches(ru)
    assert AlertFilter(regions=("RU",)).matches(ru)
    assert not AlertFilter(regions=("RU",)).matches(cn)
    assert not AlertFilter(min_severity="critical").matches(ru)
    assert AlertFilter(min_severity="critical").matches(cn)
    assert not AlertFilter(states=("resolved",)).matches(ru)
    assert not AlertFilter(rules=("other",)).matches(ru)
    with pytest.raises(ValidationError):
        AlertFilter(regions=("XX",))


def _record(**kw: object) -> SubscriptionRecord:
    fields: dict[str, object] = {
        "id": "sub_" + "a" * 24,
        "kind": "webhook",
        "url": "https://hooks.example.org/x",
        "secret": new_secret(),
        "created_at": NOW,
        "updated_at": NOW,
    }
    fields.update(kw)
    return SubscriptionRecord.model_validate(fields)


def test_subscription_records_never_show_secrets() -> None:
    record = _record(previous_secret=new_secret(), previous_secret_until=NOW)
    public = record.public()
    assert "secret" not in public
    assert "previous_secret" not in public
    assert "whsec_" not in str(public)


def test_rotated_secret_signs_until_its_grace_ends() -> None:
    old, new = new_secret(), new_secret()
    until = NOW + dt.timedelta(hours=24)
    record = _record(secret=new, previous_secret=old, previous_secret_until=until)
    assert record.secrets(NOW) == [new, old]
    assert record.secrets(until) == [new]


@pytest.mark.parametrize(
    "url", ["ftp://host/x", "file:///etc/passwd", "http://user:pw@host/x", "not a url"]
)
def test_subscription_urls_must_be_plain_http(url: str) -> None:
    with pytest.raises(ValidationError):
        _record(url=url)


def test_state_settles_a_cursor_behind_its_pending_delivery() -> None:
    alert = make_alert()
    state = DispatchState()
    pending = PendingDelivery(
        subscription_id="s",
        sequence=5,
        webhook_id="msg_x",
        alert=alert,
        partition=1,
        offset=40,
        created_ms=0,
        due_ms=0,
    )
    state.apply("c/s", encode(Cursor(subscription_id="s", sequence=4, positions={1: 30})))
    state.apply(pending.key, encode(pending))
    state.settle()  # killed after writing the delivery, before its cursor
    cursor = state.cursors["s"]
    assert cursor.sequence == 5
    assert cursor.matched(1, 40, str(alert.alert_id))
    assert not cursor.matched(1, 41, "other")
    state.apply(pending.key, None)
    assert state.pending == {}


def test_alertmanager_payload_fires_ahead_and_resolves_now() -> None:
    firing = alertmanager_payload(make_alert(), NOW, resend=60)
    assert firing["endsAt"] == (NOW + dt.timedelta(minutes=4)).isoformat()
    assert firing["labels"]["alertname"] == "ru-surge"
    assert all(isinstance(v, str) for v in firing["labels"].values())
    resolved = alertmanager_payload(make_alert(status="resolved"), NOW, resend=60)
    assert resolved["endsAt"] == NOW.isoformat()


def test_tokens_compare_in_full() -> None:
    assert authorized("Bearer abc", ["zzz", "abc"])
    assert authorized("bearer abc", ["abc"])
    for header in (None, "", "abc", "Bearer", "Bearer ab", "Bearer abcd", "Basic abc"):
        assert not authorized(header, ["abc"])
    assert not authorized("Bearer abc", [])


def test_generated_token_is_private_and_stable(tmp_path: object) -> None:
    from pathlib import Path

    settings = Settings(data_dir=Path(str(tmp_path)))
    assert settings.bearer_tokens(create=False) == ()
    (token,) = settings.bearer_tokens()
    assert settings.bearer_tokens() == (token,)
    assert settings.api_token_file.stat().st_mode & 0o077 == 0
    assert Settings(api_token="a, b").bearer_tokens() == ("a", "b")  # type: ignore[arg-type]
