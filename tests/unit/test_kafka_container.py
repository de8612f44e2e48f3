"""The testcontainers branch's configuration, checked without a Docker engine."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests._kafka_container import KAFKA_IMAGE, STARTED, kafka_env

pytestmark = pytest.mark.unit


def test_the_node_is_advertised_on_its_host_port() -> None:
    env = kafka_env(41234)
    assert env["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://127.0.0.1:41234"
    assert env["KAFKA_LISTENERS"].startswith("PLAINTEXT://:41234,")
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert KAFKA_IMAGE.startswith("apache/kafka:4.")


def test_it_matches_the_compose_file_but_for_the_port() -> None:
    text = (Path(__file__).parents[2] / "docker-compose.yml").read_text()
    assert f"image: {KAFKA_IMAGE}" in text
    block = text.split("    environment:\n", 1)[1].split("    volumes:", 1)[0]
    theirs = {
        key: value.strip().strip('"')
        for key, value in re.findall(r"^ {6}(KAFKA_\w+): (.+)$", block, re.MULTILINE)
        if key != "KAFKA_HEAP_OPTS"
    }
    ours = kafka_env(19092)
    # Same settings; only the controller port differs (compose publishes 19093 next to 19092).
    assert set(theirs) == set(ours)
    for key in ours:
        if "CONTROLLER" not in key and key != "KAFKA_LISTENERS":
            assert theirs[key] == ours[key], key


def test_testcontainers_kafka_container_would_refuse_this_image() -> None:
    """Why a generic container: the stock class rejects 4.x in KRaft mode (its version check)."""
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.core.version import ComparableVersion

    assert ComparableVersion(KAFKA_IMAGE.split(":")[-1]) < KafkaContainer.MIN_KRAFT_TAG
    assert KafkaContainer.TC_START_SCRIPT  # and it runs Confluent's /etc/confluent/docker scripts
    assert re.search(STARTED, "[KafkaServer id=1] Kafka Server started (kafka.server...)")
