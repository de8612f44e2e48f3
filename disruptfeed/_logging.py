"""Log output for every process: text for people or JSON lines for machines, without start-up noise.

A healthy start of a worker talks to a group coordinator that does not exist yet (a new group,
a broker that has just started), to topics whose leaders are still being elected, and through a
first rebalance. aiokafka and Faust log each of those steps as a WARNING or an ERROR, although
they retry and succeed on their own. :class:`BenignNoise` downgrades exactly those messages to
DEBUG (shown with ``--loglevel debug`` or ``-vv``, never dropped); any other message of the same
loggers, and any of those messages once the worker has started where they are marked start-up
only, keeps its level.
"""

from __future__ import annotations

__all__ = [
    "BENIGN",
    "BenignNoise",
    "JsonFormatter",
    "LogFormat",
    "configure_logging",
    "startup_finished",
]

import datetime as dt
import json
import logging
import re
import sys
import time
from dataclasses import dataclass
from typing import Final, Literal

LogFormat = Literal["text", "json"]

TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (RFC 3339, UTC), level, logger, message (and exception)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        doc: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            doc["exception"] = record.exc_text
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


@dataclass(frozen=True)
class Benign:
    """A message known to be harmless: its logger, a pattern of its text, and when."""

    logger: str
    pattern: re.Pattern[str]
    startup_only: bool
    why: str


def _b(logger: str, pattern: str, why: str, *, startup_only: bool = True) -> Benign:
    return Benign(logger, re.compile(pattern), startup_only, why)


_COORDINATOR_WAIT: Final = r"(CoordinatorNotAvailable|CoordinatorLoadInProgress|NotCoordinator)"

BENIGN: Final = (
    _b(
        "aiokafka.consumer.group_coordinator",
        rf"Group Coordinator Request failed: .*{_COORDINATOR_WAIT}",
        "a new group's coordinator is being set up; aiokafka asks again",
    ),
    _b(
        "aiokafka.consumer.group_coordinator",
        r"Marking the coordinator dead \(node .*\) ?for group",
        "follows a coordinator not ready yet; aiokafka looks it up again",
    ),
    _b(
        "aiokafka.consumer.group_coordinator",
        rf"Error sending \w+ to node .* \[.*{_COORDINATOR_WAIT}.*\] -- marking coordinator dead",
        "the coordinator moved or is loading; aiokafka looks it up again",
    ),
    _b(
        "aiokafka.consumer.group_coordinator",
        r"Heartbeat failed for group .* because it is rebalancing",
        "the first rebalance of a starting worker",
    ),
    _b(
        "aiokafka.cluster",
        r"Topic .* is not available during auto-create initialization",
        "a topic just created has no leader yet; the next metadata update has it",
    ),
)
"""The known-benign messages; everything else keeps its level."""


class BenignNoise(logging.Filter):
    """Downgrade :data:`BENIGN` messages to DEBUG; attach to their loggers.

    Start-up-only ones keep their level after :meth:`started` (a coordinator lost in the middle
    of the day is worth a warning).
    """

    def __init__(self, benign: tuple[Benign, ...] = BENIGN) -> None:
        super().__init__()
        self.benign = benign
        self.starting = True
        self.deadline: float | None = None

    def started(self) -> None:
        """The process has started: start-up-only messages are no longer downgraded."""
        self.starting = False

    def start_up_lasts(self, seconds: float | None) -> None:
        """A start-up begins now; it ends after ``seconds`` or at :meth:`started` (None: then)."""
        self.starting = True
        self.deadline = None if seconds is None else time.monotonic() + seconds

    def _starting(self) -> bool:
        if self.starting and self.deadline is not None and time.monotonic() > self.deadline:
            self.starting = False
        return self.starting

    def filter(self, record: logging.LogRecord) -> bool:
        """Downgrade the record if it is known-benign; drop it only if DEBUG is not wanted."""
        if record.levelno < logging.WARNING or record.levelno >= logging.CRITICAL:
            return True
        message = record.getMessage()
        for item in self.benign:
            if item.logger != record.name or (item.startup_only and not self._starting()):
                continue
            if item.pattern.search(message):
                record.levelno, record.levelname = logging.DEBUG, "DEBUG"
                return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


_NOISE: Final = BenignNoise()
"""The filter on the benign messages' loggers in this process."""


def startup_finished() -> None:
    """Tell the start-up filter that the process has started (the worker is ready)."""
    _NOISE.started()


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record comes (as logging's last resort)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass  # always the current sys.stderr


STARTUP_SECONDS: Final = 120.0
"""How long a process that never says it has started (the dispatcher, a client) is starting."""


def configure_logging(
    level: int | str, log_format: LogFormat = "text", *, startup: float | None = STARTUP_SECONDS
) -> None:
    """Log to stderr at ``level`` in ``log_format``, with the start-up noise downgraded.

    Calling it again (the worker after the CLI) replaces the handler it added before; handlers
    others added (pytest's) stay.

    Args:
        level: the root logger's level.
        log_format: text lines or JSON lines.
        startup: seconds the start-up lasts, or None: until :func:`startup_finished`.
    """
    _NOISE.start_up_lasts(startup)
    handler = _StderrHandler()
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    root = logging.getLogger()
    for old in root.handlers[:]:
        if isinstance(old, _StderrHandler):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    for name in {item.logger for item in _NOISE.benign}:
        logger = logging.getLogger(name)
        if _NOISE not in logger.filters:
            logger.addFilter(_NOISE)
