"""The testcontainers branch of the session broker: apache/kafka 4.x as a single KRaft node.

testcontainers' ``KafkaContainer`` is written for Confluent's images: ``with_kraft()`` refuses
any tag below 7.0.0 (so ``apache/kafka:4.1.1``), and its start script runs
``/etc/confluent/docker/*``, which the Apache image does not have. The Apache image is
configured by ``KAFKA_*`` environment variables instead (as in ``docker-compose.yml``), so a
generic container is started with them. The advertised address must be the one the host
reaches, known before start: the host port comes from bind(0) and is bound to the same port
inside the container.
"""

from __future__ import annotations

__all__ = ["KAFKA_IMAGE", "kafka_container", "kafka_env"]

from typing import Any

KAFKA_IMAGE = "apache/kafka:4.1.1"
STARTED = r"Kafka Server started"


def kafka_env(host_port: int) -> dict[str, str]:
    """The Apache image's environment for one broker+controller node advertised on the host."""
    return {
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": f"PLAINTEXT://:{host_port},CONTROLLER://:9093",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://127.0.0.1:{host_port}",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
    }


def kafka_container(host_port: int, image: str = KAFKA_IMAGE) -> Any:
    """A not yet started container of ``image`` reachable at ``127.0.0.1:host_port``."""
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    # Building a DockerContainer connects to the engine: the configuration itself is
    # kafka_env(), which tests/unit/test_kafka_container.py checks without one.
    container = DockerContainer(image, env=kafka_env(host_port))
    container.with_bind_ports(host_port, host_port)
    return container.waiting_for(LogMessageWaitStrategy(STARTED).with_startup_timeout(120))
