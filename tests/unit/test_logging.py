"""Log output: JSON lines, and the benign start-up messages downgraded (never dropped)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from disruptfeed._logging import BenignNoise, configure_logging

pytestmark = pytest.mark.unit

COORDINATOR = "aiokafka.consumer.group_coordinator"
NOT_AVAILABLE = "[Error 15] CoordinatorNotAvailableError: NOT_COORDINATOR"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _record(name: str, level: int, msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_known_start_up_noise_is_downgraded_to_debug() -> None:
    noise = BenignNoise()
    record = _record(
        COORDINATOR, logging.ERROR, "Group Coordinator Request failed: %s", NOT_AVAILABLE
    )
    noise.filter(record)
    assert (record.levelno, record.levelname) == (logging.DEBUG, "DEBUG")
    dead = _record(
        COORDINATOR, logging.WARNING, "Marking the coordinator dead (node %s)for group %s.", 1, "g"
    )
    noise.filter(dead)
    assert dead.levelname == "DEBUG"


def test_real_errors_of_the_same_loggers_keep_their_level() -> None:
    noise = BenignNoise()
    for record in (
        _record(
            COORDINATOR,
            logging.ERROR,
            "Group Coordinator Request failed: %s",
            "[Error 30] GroupAuthorizationFailedError",
        ),
        _record(COORDINATOR, logging.ERROR, "Heartbeat failed: %r", "boom"),
        _record(
            "aiokafka.cluster", logging.ERROR, "Topic %s is not authorized for this client", "t"
        ),
        # the same text from another logger is not the known message
        _record(
            "disruptfeed.something",
            logging.WARNING,
            "Marking the coordinator dead (node 1)for group g.",
        ),
    ):
        level = record.levelno
        assert noise.filter(record) is True
        assert record.levelno == level


def test_start_up_only_messages_keep_their_level_once_started() -> None:
    noise = BenignNoise()
    noise.started()
    record = _record(
        COORDINATOR, logging.WARNING, "Marking the coordinator dead (node %s)for group %s.", 1, "g"
    )
    assert noise.filter(record) is True
    assert record.levelno == logging.WARNING


def test_downgraded_messages_show_at_debug_and_not_above(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    log = logging.getLogger(COORDINATOR)
    configure_logging("INFO", "text")
    log.error("Group Coordinator Request failed: %s", NOT_AVAILABLE)
    log.error("Heartbeat failed: %r", "a real one")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert " ERROR aiokafka.consumer.group_coordinator: Heartbeat failed: 'a real one'" in lines[0]

    configure_logging("DEBUG", "text")
    log.error("Group Coordinator Request failed: %s", NOT_AVAILABLE)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert (
        " DEBUG aiokafka.consumer.group_coordinator: Group Coordinator Request failed" in lines[0]
    )


def test_json_log_lines(restore_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    log = logging.getLogger("disruptfeed.test")
    log.info("hello %s", "wörld")
    try:
        raise ValueError("bad")
    except ValueError:
        log.exception("it failed")
    lines = capsys.readouterr().err.splitlines()
    docs = [json.loads(line) for line in lines]  # each line is one JSON object
    assert len(docs) == 2
    for doc in docs:
        assert {"time", "level", "logger", "message"} <= doc.keys()
        assert doc["logger"] == "disruptfeed.test"
        assert doc["time"].endswith("+00:00")
    assert (docs[0]["level"], docs[0]["message"]) == ("INFO", "hello wörld")
    assert docs[1]["level"] == "ERROR"
    assert "ValueError: bad" in docs[1]["exception"]


def test_start_up_of_a_process_that_never_says_so_ends_after_its_time() -> None:
    noise = BenignNoise()
    noise.start_up_lasts(3600)
    during = _record(
        COORDINATOR, logging.WARNING, "Marking the coordinator dead (node 1)for group g."
    )
    noise.filter(during)
    assert during.levelno == logging.DEBUG
    noise.start_up_lasts(-1)  # its start-up time is over
    after = _record(
        COORDINATOR, logging.WARNING, "Marking the coordinator dead (node 1)for group g."
    )
    noise.filter(after)
    assert after.levelno == logging.WARNING
