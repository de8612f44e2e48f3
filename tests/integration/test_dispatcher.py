"""The dispatcher against a real broker and real local HTTP receivers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import standardwebhooks
from aiohttp import web

from consumers._dispatcher import Dispatcher
from consumers._registry import SubscriptionAdmin
from disruptfeed.errors import EndpointRefusedError
from disruptfeed.settings import Settings
from disruptfeed.topics import DELIVERY_DEAD_LETTER
from schemas._subscriptions import AlertFilter
from tests.factories import make_alert
from tests.integration.delivery import (
    publish_alerts,
    receiver,
    running_dispatcher,
    wait_until,
)

pytestmark = pytest.mark.integration

SettingsFactory = Callable[..., Awaitable[Settings]]
FAST = {"webhook_allow_private": True, "webhook_retry_schedule": "0,0.2,0.2", "webhook_timeout": 2}


def _verify(secret: str, body: bytes, headers: dict[str, str]) -> Any:
    return standardwebhooks.Webhook(secret).verify(body, headers)


async def test_signed_deliveries_verify_with_standard_webhooks(
    make_settings: SettingsFactory,
) -> None:
    settings = await make_settings(**FAST)
    async with receiver() as r, running_dispatcher(settings) as dispatcher:
        assert dispatcher.admin is not None
        sub, secret = await dispatcher.admin.create(
            r.url, filter=AlertFilter(regions=("RU",), min_severity="warning")
        )
        assert secret is not None
        alerts = [
            make_alert("RU", n=1),
            make_alert("CN", n=2),  # another region
            make_alert("RU", n=3, severity="info"),  # below the minimum severity
            make_alert("RU", n=4, status="resolved"),
        ]
        await publish_alerts(settings, alerts)
        await r.wait_for(lambda: len(r.requests) >= 2, "two deliveries")

    # Alerts with other fingerprints sit on other partitions: no order between them.
    assert sorted(r.alert_ids()) == sorted([str(alerts[0].alert_id), str(alerts[3].alert_id)])
    for seq, got in enumerate(r.requests, start=1):
        payload = _verify(secret, got.body, got.headers)
        assert payload["data"]["alert_id"] == got.json["data"]["alert_id"]
        assert got.headers["webhook-sequence"] == str(seq) == str(got.json["sequence"])
        assert got.json["subscription_id"] == sub.id
        assert got.headers["webhook-id"].startswith("msg_")
    first = r.requests[0]
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        _verify(secret, first.body.replace(b'"RU"', b'"UA"'), first.headers)
    stale = {**first.headers, "webhook-timestamp": str(int(time.time()) - 600)}
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        _verify(secret, first.body, stale)


async def _dead_letters(settings: Settings, name: str = DELIVERY_DEAD_LETTER) -> list[Any]:
    from consumers._kafka import read_to_end, start_consumer

    consumer = await start_consumer(settings)
    try:
        topic = settings.topic(name)
        return [r async for r in read_to_end(consumer, topic, settings.bootstrap)]
    finally:
        await consumer.stop()


def _status_sequence(*statuses: int, headers: dict[str, str] | None = None) -> Any:
    """A behaviour answering each status in turn, then 204 for ever."""

    async def behave(request: web.Request, n: int) -> web.StreamResponse:
        status = statuses[n - 1] if n <= len(statuses) else 204
        extra = headers if status != 204 and headers else {}
        if 300 <= status < 400:
            extra = {"Location": "http://127.0.0.1:1/elsewhere"}
        return web.Response(status=status, headers=extra)

    return behave


async def test_failures_are_retried_with_the_same_webhook_id(
    make_settings: SettingsFactory,
) -> None:
    settings = await make_settings(**{**FAST, "webhook_retry_schedule": "0,0.1,0.1,0.1"})
    async with receiver(_status_sequence(500, 302, 503)) as r, running_dispatcher(settings) as d:
        assert d.admin is not None
        sub, _ = await d.admin.create(r.url)
        alert = make_alert(n=1)
        await publish_alerts(settings, [alert])
        await r.wait_for(lambda: len(r.requests) == 4, "three failures and a success")
        await wait_until(lambda: d.stats.delivered == 1, "the success recorded")
        log = await d.admin.deliveries(sub.id)

    assert {req.headers["webhook-id"] for req in r.requests} == {
        r.requests[0].headers["webhook-id"]
    }
    assert {req.headers["webhook-sequence"] for req in r.requests} == {"1"}
    assert [req.body for req in r.requests] == [r.requests[0].body] * 4  # byte-identical
    assert [(a.attempt, a.outcome, a.status_code) for a in log] == [
        (1, "retrying", 500),
        (2, "retrying", 302),  # a redirect is a failure, not followed
        (3, "retrying", 503),
        (4, "delivered", 204),
    ]
    assert d.stats.failed_attempts == 3


async def test_retry_after_is_honoured(make_settings: SettingsFactory) -> None:
    settings = await make_settings(**{**FAST, "webhook_retry_schedule": "0,0.1"})
    behave = _status_sequence(429, headers={"Retry-After": "2"})
    async with receiver(behave) as r, running_dispatcher(settings) as d:
        assert d.admin is not None
        await d.admin.create(r.url)
        await publish_alerts(settings, [make_alert(n=1)])
        await r.wait_for(lambda: len(r.requests) == 2, "the retry", timeout=30)
    waited = r.requests[1].at - r.requests[0].at
    assert waited >= 2.0, f"retried after {waited:.2f} s despite Retry-After: 2"


async def test_gone_disables_the_subscription(make_settings: SettingsFactory) -> None:
    settings = await make_settings(**FAST)
    async with receiver(_status_sequence(410)) as r, running_dispatcher(settings) as d:
        assert d.admin is not None
        sub, _ = await d.admin.create(r.url)
        await publish_alerts(settings, [make_alert(n=1)])
        await wait_until(lambda: d.admin.get(sub.id).state == "disabled", "disabled")  # type: ignore[union-attr]
        await wait_until(lambda: d.stats.dead_lettered == 1, "the delivery dead-lettered")
        await publish_alerts(settings, [make_alert(n=2)])
        await wait_until(lambda: d.stats.alerts_read == 2, "the second alert read")
        reason = d.admin.get(sub.id).state_reason
    assert len(r.requests) == 1  # nothing after the 410
    assert reason is not None
    assert "410" in reason
    dead = await _dead_letters(settings)
    assert len(dead) == 1
    assert b"410" in dict(dead[0].headers)["dlq_reason"]


async def test_exhausted_attempts_go_to_the_dead_letter_topic(
    make_settings: SettingsFactory,
) -> None:
    gate = asyncio.Event()

    async def hang_then_fail(request: web.Request, n: int) -> web.StreamResponse:
        if n == 1:
            await gate.wait()  # past the attempt timeout
        return web.Response(status=500, text="broken")

    settings = await make_settings(**{**FAST, "webhook_timeout": 0.5})
    async with receiver(hang_then_fail) as r, running_dispatcher(settings) as d:
        assert d.admin is not None
        sub, _ = await d.admin.create(r.url)
        alert = make_alert(n=1)
        await publish_alerts(settings, [alert])
        await wait_until(lambda: d.stats.dead_lettered == 1, "dead-lettered", timeout=30)
        gate.set()
        log = await d.admin.deliveries(sub.id)
    assert len(r.requests) == 3
    assert [a.outcome for a in log] == ["retrying", "retrying", "dead-lettered"]
    assert log[0].error is not None
    assert "timed out" in log[0].error
    assert log[1].status_code == 500
    dead = await _dead_letters(settings)
    assert len(dead) == 1
    headers = dict(dead[0].headers)
    assert headers["dlq_alert_id"] == str(alert.alert_id).encode()
    assert b"3 attempts failed" in headers["dlq_reason"]
    assert headers["webhook-id"] == r.requests[0].headers["webhook-id"].encode()


async def test_an_unreadable_alert_record_is_dead_lettered_and_the_next_one_delivered(
    make_settings: SettingsFactory,
) -> None:
    from consumers._kafka import start_producer
    from disruptfeed._aiokafka import stop_client
    from disruptfeed._dlq import DeadLetterRecord
    from disruptfeed.topics import ALERTS, DEAD_LETTER
    from schemas import asyncapi_document
    from tests._asyncapi_spec import document_validator

    settings = await make_settings(**FAST, partitions=1)  # the good alert right after the bad
    good = make_alert("RU", n=1)
    async with receiver() as r, running_dispatcher(settings) as d:
        assert d.admin is not None
        producer = await start_producer(settings)
        try:
            await producer.send_and_wait(
                settings.topic(ALERTS), key=b"RU", value=b'{"not": "an alert"'
            )
        finally:
            await stop_client(producer)
        await wait_until(lambda: d.stats.invalid_alerts == 1, "the bad record read")
        # A subscription for every alert kept: its backfill reads the bad record again, and
        # must not dead-letter it a second time.
        await d.admin.create(r.url, from_beginning=True)
        await publish_alerts(settings, [good])
        await r.wait_for(lambda: len(r.requests) == 1, "the good alert delivered")
        assert d.stats.invalid_alerts == 1
    assert r.alert_ids() == [str(good.alert_id)]
    [record] = await _dead_letters(settings, DEAD_LETTER)
    letter = DeadLetterRecord.from_record(record)
    assert letter.value == b'{"not": "an alert"'
    assert letter.source == f"{settings.topic(ALERTS)}[0]@0"
    assert (letter.code, letter.error_type) == ("invalid-alert", "ValidationError")
    assert letter.reason
    assert letter.matches(["invalid-alert"])
    headers = {name: (raw or b"").decode() for name, raw in record.headers}
    dead_letter = document_validator(
        asyncapi_document(settings), "/components/messages/deadLetter/headers"
    )
    assert [e.message for e in dead_letter.iter_errors(headers)] == []


async def test_a_slow_endpoint_does_not_hold_back_a_fast_one(
    make_settings: SettingsFactory,
) -> None:
    gate = asyncio.Event()

    async def stuck(request: web.Request, n: int) -> web.StreamResponse:
        await gate.wait()
        return web.Response(status=204)

    settings = await make_settings(**{**FAST, "webhook_timeout": 30, "webhook_queue_size": 2})
    alerts = [make_alert(n=i) for i in range(30)]
    async with receiver(stuck) as slow, receiver() as fast, running_dispatcher(settings) as d:
        assert d.admin is not None
        await d.admin.create(slow.url)
        await d.admin.create(fast.url)
        started = time.monotonic()
        await publish_alerts(settings, alerts)
        await fast.wait_for(lambda: len(fast.requests) == 30, "every alert at the fast endpoint")
        took = time.monotonic() - started
        slow_got = len(slow.requests)
        gate.set()
        await slow.wait_for(lambda: len(slow.requests) == 30, "the slow endpoint catching up")
    assert slow_got == 1  # its one delivery in flight, the rest queued or rescheduled
    assert sorted(fast.alert_ids()) == sorted(str(a.alert_id) for a in alerts)
    sequences = sorted(int(q.headers["webhook-sequence"]) for q in slow.requests)
    assert sequences == list(range(1, 31))
    print(f"fast endpoint got 30 alerts in {took:.2f} s while the slow one held its first")


async def test_new_subscriptions_start_now_unless_from_beginning(
    make_settings: SettingsFactory,
) -> None:
    settings = await make_settings(**FAST)
    before = make_alert(n=1)
    after = make_alert(n=2)
    await publish_alerts(settings, [before])
    async with receiver() as now_r, receiver() as all_r, running_dispatcher(settings) as d:
        assert d.admin is not None
        await wait_until(lambda: d.stats.alerts_read == 1, "the old alert read")
        await d.admin.create(now_r.url)
        await d.admin.create(all_r.url, from_beginning=True)
        await publish_alerts(settings, [after])
        await all_r.wait_for(lambda: len(all_r.requests) == 2, "history and the new alert")
        await now_r.wait_for(lambda: len(now_r.requests) == 1, "the new alert")
    assert now_r.alert_ids() == [str(after.alert_id)]
    assert sorted(all_r.alert_ids()) == sorted([str(before.alert_id), str(after.alert_id)])


async def test_a_fresh_dispatcher_does_not_flood_old_subscriptions(
    make_settings: SettingsFactory,
) -> None:
    settings = await make_settings(**FAST)
    async with receiver() as r:
        async with SubscriptionAdmin(settings) as admin:
            await admin.create(r.url)
        await publish_alerts(settings, [make_alert(n=1)])
        async with running_dispatcher(settings) as d:
            await r.wait_for(lambda: len(r.requests) == 1, "the alert")
            assert d.stats.delivered == 1
        # A second dispatcher with a new group (no committed offsets) re-reads the topic...
        settings2 = settings.model_copy(update={"topic_prefix": settings.topic_prefix})
        d2 = Dispatcher(settings2, group_id=f"{settings.topic_prefix}-other")
        await d2.start()
        try:
            await d2._run_backfill()
            assert d2.stats.matched == 0  # ...and its cursor says the alert was delivered
        finally:
            await d2.stop()
    assert len(r.requests) == 1


async def test_paused_subscriptions_hold_deliveries_until_resumed(
    make_settings: SettingsFactory,
) -> None:
    settings = await make_settings(**FAST)
    async with receiver() as r, running_dispatcher(settings) as d:
        assert d.admin is not None
        sub, _ = await d.admin.create(r.url)
        await d.admin.set_state(sub.id, "paused")
        await publish_alerts(settings, [make_alert(n=1), make_alert(n=2)])
        await wait_until(lambda: d.stats.matched == 2, "both alerts matched")
        await wait_until(lambda: len(d._held[sub.id]) == 2, "both held")
        assert r.requests == []
        await d.admin.set_state(sub.id, "active")
        await r.wait_for(lambda: len(r.requests) == 2, "the held deliveries")


async def test_rotated_secret_signs_with_both_for_a_while(make_settings: SettingsFactory) -> None:
    settings = await make_settings(**FAST)
    async with receiver() as r, running_dispatcher(settings) as d:
        assert d.admin is not None
        sub, old = await d.admin.create(r.url)
        _, new = await d.admin.rotate_secret(sub.id)
        await publish_alerts(settings, [make_alert(n=1)])
        await r.wait_for(lambda: len(r.requests) == 1, "the delivery")
    got = r.requests[0]
    assert old is not None
    assert new != old
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    _verify(old, got.body, got.headers)
    _verify(new, got.body, got.headers)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://[fd00::1]/hook",
        "http://metadata.google.internal/",
    ],
)
async def test_private_endpoints_are_refused_at_creation(
    make_settings: SettingsFactory, url: str
) -> None:
    settings = await make_settings()
    async with SubscriptionAdmin(settings) as admin:
        with pytest.raises(EndpointRefusedError, match=r"ALLOW_PRIVATE|metadata"):
            await admin.create(url)
        assert admin.all() == []


async def test_private_endpoints_are_refused_again_at_delivery(
    make_settings: SettingsFactory,
) -> None:
    allowed = await make_settings(**FAST)
    strict = allowed.model_copy(update={"webhook_allow_private": False})
    async with receiver() as r:
        async with SubscriptionAdmin(allowed) as admin:
            sub, _ = await admin.create(r.url)
        await publish_alerts(allowed, [make_alert(n=1)])
        async with running_dispatcher(strict) as d:
            await wait_until(lambda: d.stats.dead_lettered == 1, "refused three times")
            assert d.admin is not None
            log = await d.admin.deliveries(sub.id)
    assert r.requests == []
    assert log[0].error is not None
    assert log[0].error.startswith("refused:")


async def test_an_endpoint_down_for_a_while_gets_everything_when_it_is_back(
    make_settings: SettingsFactory,
) -> None:
    from disruptfeed.broker import free_port

    settings = await make_settings(**{**FAST, "webhook_retry_schedule": "0,0.3,0.3,0.3,0.3,0.3"})
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    alerts = [make_alert(n=i) for i in range(3)]
    async with running_dispatcher(settings) as d:
        assert d.admin is not None
        sub, _ = await d.admin.create(url)
        await publish_alerts(settings, alerts)
        # Nothing listens yet: every delivery is refused and retried.
        await wait_until(lambda: d.stats.failed_attempts >= 3, "refused attempts")
        async with receiver(port=port) as r:
            await r.wait_for(lambda: len(r.requests) == 3, "the backlog after the endpoint is up")
        log = await d.admin.deliveries(sub.id)
    assert sorted(r.alert_ids()) == sorted(str(a.alert_id) for a in alerts)
    refused = [a for a in log if a.outcome == "retrying"]
    assert refused
    assert all(a.status_code is None and a.error for a in refused)  # connection errors, named
    assert [a.outcome for a in log].count("delivered") == 3
