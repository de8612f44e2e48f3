"""Fixtures: one real Kafka broker per test session, and unique topics per test.

The broker comes from, in order of preference:
1. ``DISRUPTFEED_BOOTSTRAP_SERVERS`` (an existing cluster; nothing is started or stopped);
2. testcontainers' ``KafkaContainer`` where a Docker engine answers;
3. the project's own launcher (Kafka from Maven Central jars), on ports from bind(0).
All three are real Kafka; there is no fake broker.
"""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from disruptfeed.settings import Settings
from disruptfeed.topics import create_topics

# Property-based tests (tests/*/test_fuzz_*.py). "ci", the default, runs the same examples on
# every run (derandomize: a red build is reproducible, a green one is not luck) with no
# per-example deadline (two shared cores stall now and then); "explore" draws new random
# examples each run, and more of them, for hunting locally: HYPOTHESIS_PROFILE=explore.
# Tests that are slower per example (HTTP, the broker) scale their counts from max_examples.
hypothesis_settings.register_profile(
    "ci", max_examples=1_000, derandomize=True, deadline=None, database=None, print_blob=True
)
hypothesis_settings.register_profile("explore", max_examples=20_000, deadline=None)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_configure(config: pytest.Config) -> None:
    # A developer's .env must not change what a test (or a CLI it starts) sees.
    os.environ["DISRUPTFEED_NO_ENV_FILE"] = "1"


def _docker_answers() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        done = subprocess.run([docker, "info"], capture_output=True, timeout=10, check=False)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The bootstrap address of a real broker for the whole session."""
    from disruptfeed.broker import LocalBroker, free_port, wait_until_ready

    base = Settings()
    if base.bootstrap_servers:
        wait_until_ready(base.bootstrap_servers, timeout=60)
        yield base.bootstrap_servers
        return
    if _docker_answers():
        from tests._kafka_container import kafka_container

        port = free_port()
        with kafka_container(port):
            wait_until_ready(f"127.0.0.1:{port}", timeout=60)
            yield f"127.0.0.1:{port}"
        return
    data = tmp_path_factory.mktemp("kafka")
    broker = LocalBroker(
        Settings(data_dir=data, cache_dir=base.cache_dir),
        data_dir=data / "broker",
        port=free_port(),
        controller_port=free_port(),
    )
    status = broker.start()
    try:
        yield status.bootstrap_servers
    finally:
        broker.stop()


SettingsFactory = Callable[..., Awaitable[Settings]]


@pytest.fixture
def make_settings(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> SettingsFactory:
    """Settings pointing at the session broker, with a topic prefix no other test uses.

    Each gets its own data directory (keys, sequence numbers, tokens). The topics are created
    before the settings are returned.
    """

    async def make(**overrides: object) -> Settings:
        fields: dict[str, object] = {
            "bootstrap_servers": kafka_bootstrap,
            "data_dir": tmp_path_factory.mktemp("data"),
            "topic_prefix": f"t-{uuid.uuid4().hex[:12]}",
            "partitions": 3,
            "linger_ms": 5,
        }
        fields.update(overrides)
        settings = Settings(**fields)  # type: ignore[arg-type]
        await create_topics(settings)
        return settings

    return make


@pytest.fixture(autouse=True)
def _collect_garbage_in_the_test() -> Iterator[None]:
    """Collect garbage before each test ends, so a leaked socket fails the test that leaked it.

    Without it, the ResourceWarning of an unclosed client surfaces (as an error, with
    filterwarnings=error) in whichever later test the collector happens to run in.
    """
    yield
    gc.collect()


@pytest.fixture
def group_id() -> str:
    """A consumer group no other test uses."""
    return f"g-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
