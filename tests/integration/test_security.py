"""The feed over a secured cluster: SASL_SSL (SCRAM) end to end, and fast, named failures.

A separate broker, started as a user would (``disruptfeed broker start --secure``) in a tmp
data directory on ports from bind(0), and stopped after: one SASL_SSL listener, a throwaway CA,
SCRAM users with random passwords, authorization on. Every client is pointed at it by the env
lines that command prints, and nothing else.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from consumers import Subscription, read_alerts
from consumers._kafka import start_consumer, start_producer
from disruptfeed._aiokafka import stop_client
from disruptfeed._liveness import wait_until_ready
from disruptfeed._tls import make_broker_tls
from disruptfeed.broker import free_port, secure_broker
from disruptfeed.errors import AuthenticationError, ConnectionSecurityError, TLSError
from disruptfeed.settings import Settings
from disruptfeed.topics import create_topics
from producers import FeedProducer
from schemas import AccountDisrupted, codec
from tests.factories import account
from tests.integration.helpers import ng_burst_rules
from tests.integration.worker import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FAST_S = 20.0
"""A misconfigured client must fail within this: an outcome check against a hang (retrying or
waiting out a 30 s request timeout), not a benchmark."""

RULES = ng_burst_rules()


def _cli(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "disruptfeed", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def secure_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """``broker start --secure`` in a tmp data dir: the DISRUPTFEED_* lines it printed."""
    data = tmp_path_factory.mktemp("secure-kafka")
    env = {**os.environ, "DISRUPTFEED_DATA_DIR": str(data)}
    env.pop("DISRUPTFEED_BOOTSTRAP_SERVERS", None)  # the broker commands refuse an external one
    try:
        done = _cli(env, "broker", "start", "--secure")
        assert done.returncode == 0, done.stderr
        printed = dict(re.findall(r"^export (DISRUPTFEED_\w+)=(.*)$", done.stdout, re.M))
        assert set(printed) == {
            "DISRUPTFEED_BOOTSTRAP_SERVERS",
            "DISRUPTFEED_SECURITY_PROTOCOL",
            "DISRUPTFEED_SASL_MECHANISM",
            "DISRUPTFEED_SASL_USERNAME",
            "DISRUPTFEED_SASL_PASSWORD",
            "DISRUPTFEED_SSL_CA_FILE",
        }, done.stdout
        assert printed["DISRUPTFEED_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert printed["DISRUPTFEED_SASL_MECHANISM"] == "SCRAM-SHA-512"
        assert "topic disruptfeed.alerts: created" in done.stderr  # as the feed user
        status = _cli(env, "broker", "status")
        assert f"secure broker running: {printed['DISRUPTFEED_BOOTSTRAP_SERVERS']}" in status.stdout
        assert "answering=yes" in status.stdout
        yield printed
    finally:
        stopped = _cli(env, "broker", "stop")
        assert "secure broker stopped" in stopped.stderr, stopped.stderr
        # Whatever happened above, no JVM outlives the module.
        secure_broker(Settings(data_dir=data)).stop()


def _settings(env: dict[str, str], tmp: Path, **overrides: Any) -> Settings:
    fields: dict[str, Any] = {
        "bootstrap_servers": env["DISRUPTFEED_BOOTSTRAP_SERVERS"],
        "security_protocol": env["DISRUPTFEED_SECURITY_PROTOCOL"],
        "sasl_mechanism": env["DISRUPTFEED_SASL_MECHANISM"],
        "sasl_username": env["DISRUPTFEED_SASL_USERNAME"],
        "sasl_password": SecretStr(env["DISRUPTFEED_SASL_PASSWORD"]),
        "ssl_ca_file": Path(env["DISRUPTFEED_SSL_CA_FILE"]),
        "data_dir": tmp,
        "topic_prefix": f"t-{uuid.uuid4().hex[:12]}",
        "partitions": 3,
        "linger_ms": 5,
    }
    fields.update(overrides)
    return Settings(**fields)


async def test_publish_count_alert_and_consume_over_sasl_ssl(
    secure_env: dict[str, str], tmp_path: Path
) -> None:
    settings = _settings(secure_env, tmp_path / "client")
    assert await create_topics(settings)  # the admin client, as the feed user
    events = [account("NG", minutes=i) for i in range(6)] + [account("RU")]
    async with FeedProducer(settings) as producer:
        assert all(o.ok for o in await producer.publish_many(events))

    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    security = {k: v for k, v in secure_env.items() if k != "DISRUPTFEED_BOOTSTRAP_SERVERS"}
    worker = WorkerProcess(settings, tmp_path / "worker", rules, env=security)

    def run_worker() -> None:
        worker.start()
        try:
            worker.wait_healthy()
            worker.wait_for(
                lambda: worker.get("/counts/NG")["NG"]["account.disrupted"]["total"] == 6,
                "the worker to count NG's six events",
            )
            worker.wait_for(lambda: len(worker.get("/alerts")["alerts"]) == 1, "the NG alert")
        finally:
            worker.stop()

    await asyncio.to_thread(run_worker)

    # The alert, as on-call tools read it: typed, from the alerts topic, over SASL_SSL.
    alerts = [a async for a in read_alerts(settings, start="earliest", until_end=True)]
    assert [(a.rule, a.region, a.status) for a in alerts] == [("ng-burst", "NG", "firing")]
    # The events, through the typed subscriber in a consumer group (group coordinator, commits).
    got: list[AccountDisrupted] = []
    async with Subscription(
        [AccountDisrupted], settings=settings, group_id=f"g-{uuid.uuid4().hex[:8]}",
        start="earliest",
    ) as sub:  # fmt: skip

        async def take() -> None:
            async for received in sub:
                assert isinstance(received.event, AccountDisrupted)
                got.append(received.event)
                if len(got) == len(events):
                    await sub.commit()
                    return

        await asyncio.wait_for(take(), timeout=60)
    assert {e.event_id for e in got} == {e.event_id for e in events}

    log = worker.log_path.read_text(errors="replace")
    # Faust's clients authenticated with the mechanism asked for, not PLAIN.
    assert "Authenticated as feed via SCRAM-SHA-512" in log
    assert secure_env["DISRUPTFEED_SASL_PASSWORD"] not in log


async def test_every_mechanism_and_the_librdkafka_client(
    secure_env: dict[str, str], tmp_path: Path
) -> None:
    """SCRAM-SHA-256 and PLAIN (over TLS) work too; confluent-kafka gets the same connection."""
    for mechanism in ("SCRAM-SHA-256", "PLAIN"):
        settings = _settings(secure_env, tmp_path, sasl_mechanism=mechanism)
        assert set((await create_topics(settings)).values()) == {"created"}
    from confluent_kafka import Consumer, Producer

    topic = settings.topic("account-disrupted")
    producer = Producer(settings.rdkafka_config())
    producer.produce(topic, value=codec.encode(account("RU")), key=b"RU")
    assert producer.flush(30) == 0
    consumer = Consumer(
        {**settings.rdkafka_config(), "group.id": f"g-{uuid.uuid4().hex[:8]}",
         "auto.offset.reset": "earliest"}
    )  # fmt: skip
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 60
        message = None
        while message is None and time.monotonic() < deadline:
            message = consumer.poll(1.0)
        assert message is not None, "confluent-kafka read nothing over SASL_SSL"
        assert message.error() is None, message.error()
        assert message.key() == b"RU"
    finally:
        consumer.close()


def _misconfigured(env: dict[str, str], tmp: Path, case: str) -> Settings:
    if case == "wrong-password":
        return _settings(
            env, tmp, sasl_password=SecretStr("not-" + env["DISRUPTFEED_SASL_PASSWORD"])
        )
    if case == "unknown-ca":  # a CA file, but another CA's: the broker's chain is not trusted
        return _settings(env, tmp, ssl_ca_file=make_broker_tls(tmp / "other-ca").ca_file)
    assert case == "plaintext-to-tls"
    return _settings(
        env, tmp, security_protocol="PLAINTEXT", sasl_mechanism=None, sasl_username=None,
        sasl_password=None, ssl_ca_file=None,
    )  # fmt: skip


EXPECTED = {
    "wrong-password": (AuthenticationError, "DISRUPTFEED_SASL_PASSWORD"),
    "unknown-ca": (TLSError, "DISRUPTFEED_SSL_CA_FILE"),
    "plaintext-to-tls": (TLSError, "DISRUPTFEED_SECURITY_PROTOCOL"),
}


@pytest.mark.parametrize("case", list(EXPECTED))
async def test_misconfigured_clients_fail_fast_naming_the_setting(
    secure_env: dict[str, str], tmp_path: Path, case: str
) -> None:
    settings = _misconfigured(secure_env, tmp_path, case)
    wanted, setting = EXPECTED[case]
    real_password = secure_env["DISRUPTFEED_SASL_PASSWORD"]
    timings: dict[str, float] = {}

    async def read_one_alert() -> None:
        async for _ in read_alerts(settings):
            break

    async def subscribe() -> None:
        async with Subscription([AccountDisrupted], settings=settings):
            pass

    async def publish() -> None:
        async with FeedProducer(settings):
            pass

    async def dispatcher_clients() -> None:  # what the dispatcher and registry start with
        await stop_client(await start_consumer(settings))
        await stop_client(await start_producer(settings))

    async def bench_wait() -> None:  # the bench's check of an external cluster (60 s allowed)
        await asyncio.to_thread(
            wait_until_ready, settings.bootstrap, 60.0, client_kwargs=settings.client_kwargs()
        )

    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "admin": lambda: create_topics(settings),
        "producer": publish,
        "subscription": subscribe,
        "alerts": read_one_alert,
        "dispatcher": dispatcher_clients,
        "bench-wait": bench_wait,
    }
    for name, call in calls.items():
        start = time.monotonic()
        with pytest.raises(ConnectionSecurityError) as caught:
            await call()
        timings[name] = time.monotonic() - start
        assert isinstance(caught.value, wanted), (name, caught.value)
        assert not caught.value.retriable
        message = str(caught.value)
        assert setting in message, (name, message)
        assert "\n" not in message
        assert real_password not in message

    # The CLI, as people meet it: the producer (publish) and the Faust worker, in processes.
    env = {
        **os.environ,
        "DISRUPTFEED_BOOTSTRAP_SERVERS": settings.bootstrap,
        "DISRUPTFEED_TOPIC_PREFIX": settings.topic_prefix,
        "DISRUPTFEED_DATA_DIR": str(tmp_path / "cli"),
        "DISRUPTFEED_SECURITY_PROTOCOL": settings.security_protocol,
        "DISRUPTFEED_WORKER_PORT": str(free_port()),
    }
    if settings.sasl_password is not None:
        env |= {
            "DISRUPTFEED_SASL_MECHANISM": str(settings.sasl_mechanism),
            "DISRUPTFEED_SASL_USERNAME": str(settings.sasl_username),
            "DISRUPTFEED_SASL_PASSWORD": settings.sasl_password.get_secret_value(),
        }
    if settings.ssl_ca_file is not None:
        env["DISRUPTFEED_SSL_CA_FILE"] = str(settings.ssl_ca_file)
    line = codec.encode(account("RU")).decode() + "\n"
    for name, args in (("cli-publish", ("publish", "-")), ("cli-worker", ("worker",))):
        start = time.monotonic()
        done = await asyncio.to_thread(_cli, env, *args, stdin=line)
        timings[name] = time.monotonic() - start
        assert done.returncode == 4, (name, done.stdout, done.stderr)  # EXIT_CONFIG
        errors = [text for text in done.stderr.splitlines() if text.startswith("error: ")]
        assert len(errors) == 1, (name, done.stderr)
        assert setting in errors[0], (name, errors[0])
        for secret in (real_password, env.get("DISRUPTFEED_SASL_PASSWORD")):
            assert secret is None or secret not in done.stdout + done.stderr
    print(f"{case}: " + ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()))
    slow = {name: round(took, 2) for name, took in timings.items() if took >= FAST_S}
    assert not slow, f"took {FAST_S:g} s or more: {slow}"


async def test_live_streams_answer_503_when_the_servers_credentials_stop_working(
    secure_env: dict[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The broker's password for the feed user is rotated while the dispatcher's API runs: a
    # live stream's new consumer is refused. That is the server's trouble, not the request's:
    # 503 (try again later), not 400 or 500, and not the server's settings in the answer.
    from consumers._dispatcher import Dispatcher
    from tests.integration.helpers import serving

    settings = _misconfigured(secure_env, tmp_path, "wrong-password").model_copy(
        update={"api_token": SecretStr("stream-token-1234")}
    )
    auth = {"Authorization": "Bearer stream-token-1234"}
    async with serving(settings, Dispatcher(settings)) as http:
        for path in ("/stream/alerts", "/stream/events"):
            refused = await http.get(path, headers=auth)
            assert refused.status_code == 503, (path, refused.text)
            assert refused.headers["Retry-After"] == "30"
            error = refused.json()["error"]
            assert "its Kafka cluster" in error, error
            assert "server's log" in error, error
            assert "DISRUPTFEED_" not in refused.text
            assert settings.bootstrap not in refused.text
    logged = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("DISRUPTFEED_SASL_PASSWORD" in line for line in logged), logged
