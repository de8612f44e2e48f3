"""Existing topics are checked against the settings, never assumed to fit."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from disruptfeed.cli._common import EXIT_CONFIG
from disruptfeed.errors import TopicMismatchError
from disruptfeed.topics import ALERTS, TopicSpec, create_topics, topic_specs
from tests.conftest import SettingsFactory

pytestmark = pytest.mark.integration


async def test_existing_topics_that_differ_are_named_with_each_difference(
    make_settings: SettingsFactory,
) -> None:
    settings = await make_settings()  # its topics exist, with 3 partitions
    again = await create_topics(settings)
    assert set(again.values()) == {"exists"}

    other = settings.model_copy(update={"partitions": 6})
    with pytest.raises(TopicMismatchError) as raised:
        await create_topics(other)
    lines = raised.value.differences
    alerts = settings.topic(ALERTS)
    assert f"{alerts}: 3 partitions, settings want 6" in lines
    # Single-partition topics (subscriptions, checkpoints, dispatch state) still fit.
    assert len(lines) == sum(1 for s in topic_specs(other) if s.partitions == 6)
    assert "DISRUPTFEED_PARTITIONS" in str(raised.value)

    compacted = TopicSpec(alerts, 3, 1, {"cleanup.policy": "compact", "min.insync.replicas": "2"})
    with pytest.raises(TopicMismatchError) as raised:
        await create_topics(settings, [compacted])
    assert raised.value.differences == [
        f"{alerts}: cleanup.policy=delete, settings want compact",
        f"{alerts}: min.insync.replicas=1, settings want 2",
    ]


async def test_the_cli_says_what_differs_and_exits_with_the_configuration_code(
    make_settings: SettingsFactory,
) -> None:
    settings = await make_settings()
    env = {
        **os.environ,
        "DISRUPTFEED_BOOTSTRAP_SERVERS": settings.bootstrap,
        "DISRUPTFEED_TOPIC_PREFIX": settings.topic_prefix,
        "DISRUPTFEED_PARTITIONS": "4",
        "DISRUPTFEED_DATA_DIR": str(settings.data_dir),
    }
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "disruptfeed", "topics", "create"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == EXIT_CONFIG, done.stdout + done.stderr
    assert "3 partitions, settings want 4" in done.stderr
    assert "Traceback" not in done.stderr
