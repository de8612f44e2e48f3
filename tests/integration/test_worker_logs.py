"""A healthy worker start logs no WARNING or ERROR, as text or as JSON lines."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from producers import FeedProducer
from tests.conftest import SettingsFactory
from tests.factories import account, network
from tests.integration.worker import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<level>[A-Z]+) (?P<logger>\S+): ")


async def _healthy_start(worker: WorkerProcess) -> str:
    """Start the worker on a fresh topic prefix (a new group), count a few events, its log."""
    events = [account("RU", minutes=i) for i in range(5)] + [network("CN")]
    async with FeedProducer(worker.settings) as producer:
        assert all(o.ok for o in await producer.publish_many(events))
    worker.start()
    try:
        worker.wait_healthy()

        def counted() -> bool:
            data = worker.get("/counts")
            total = sum(row["total"] for types in data.values() for row in types.values())
            return bool(total == len(events))

        worker.wait_for(counted, "the events to be counted")
        return worker.log_path.read_text(errors="replace")
    finally:
        worker.stop()


async def test_a_healthy_start_logs_no_warning_or_error(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = await make_settings()
    log = await _healthy_start(WorkerProcess(settings, tmp_path / "worker"))
    lines = [line for line in log.splitlines() if line.strip()]
    # The line for people first; then log records. A record starts with its time and level; the
    # lines after it until the next one are its own (Faust's recovery tables). Nothing else may
    # be printed (a warning, a traceback).
    assert lines.pop(0).startswith(f"worker: counting the {settings.topic_prefix}.* events"), log
    assert TEXT_LINE.match(lines[0]), log
    records = [m for m in map(TEXT_LINE.match, lines) if m is not None]
    others = [line for line in lines if not TEXT_LINE.match(line)]
    assert all(line[0] in "+|" for line in others), others  # table rows only
    levels = {m["level"] for m in records}
    assert levels <= {"INFO", "DEBUG"}, log
    assert any("worker state in" in line for line in lines), log  # it did log, at INFO


async def test_json_log_lines(make_settings: SettingsFactory, tmp_path: Path) -> None:
    settings = await make_settings()
    worker = WorkerProcess(settings, tmp_path / "worker", log_format="json")
    log = await _healthy_start(worker)
    docs = [json.loads(line) for line in log.splitlines() if line.strip()]  # every line parses
    assert docs, log
    for doc in docs:
        assert {"time", "level", "logger", "message"} <= doc.keys(), doc
        assert doc["level"] in ("INFO", "DEBUG"), doc
    assert any(
        d["logger"] == "streams.app" and d["message"].startswith("worker state in") for d in docs
    )
