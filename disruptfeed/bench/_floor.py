"""The faust-floor case: what Faust itself costs, with an agent that does nothing.

A Faust app with one agent over the three event topics takes the pipeline's backlog exactly as
the worker does (``stream.take_events`` with the worker's batch settings, raw bytes, concurrency
1, at-least-once commits, uvloop) and does nothing with it. Its rate is the most any Faust agent
on this machine can do with these records, so ``feed-pipeline`` is read against it: the gap
between the two is ours, the gap between this and ``aiokafka-consumer`` is Faust's. It runs in
its own process (``python -m disruptfeed.bench._floor CONFIG``), like the Quix app, and writes
its timing to a result file.
"""

from __future__ import annotations

__all__ = ["floor_rate", "main"]

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from disruptfeed.bench._child import run_child
from disruptfeed.bench._errors import BenchError
from disruptfeed.broker import free_port
from disruptfeed.settings import Settings
from disruptfeed.topics import EVENT_TOPICS


def floor_rate(settings: Settings, count: int, workdir: Path) -> tuple[float, dict[str, Any]]:
    """Run the no-op agent over a backlog of ``count`` records; records per second.

    The clock starts when the first batch arrives and stops when the last record has, like
    feed-pipeline's, so start-up and the group join are left out.
    """
    config = {
        "broker": [f"kafka://{h.strip()}" for h in settings.bootstrap.split(",")],
        "topics": [settings.topic(name) for name in EVENT_TOPICS],
        "app_id": f"{settings.topic_prefix}-floor",
        "partitions": settings.partitions,
        "batch_size": settings.batch_size,
        "batch_wait_ms": settings.batch_wait_ms,
        "web_port": free_port(),
        "data_dir": str(workdir / "state"),
        "count": count,
    }
    figures = run_child("disruptfeed.bench._floor", "the no-op Faust agent", config, workdir)
    if figures["received"] != count:
        raise BenchError(f"the no-op Faust agent received {figures['received']} of {count}")
    timed = figures["received"] - figures["first_batch"]
    seconds = figures["last"] - figures["first"]
    return timed / seconds, {"timed_events": timed, "seconds": round(seconds, 3)}


def main(argv: list[str]) -> None:
    """The no-op agent: read the config file named by ``argv[0]``, receive, write the result."""
    import faust

    from disruptfeed._loop import use_uvloop

    use_uvloop()  # as the worker does
    config = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    Path(config["data_dir"]).mkdir(parents=True, exist_ok=True)
    app = faust.App(
        config["app_id"],
        broker=config["broker"],
        store="memory://",
        datadir=config["data_dir"],
        topic_partitions=config["partitions"],
        web_port=config["web_port"],
        web_bind="127.0.0.1",
        consumer_auto_offset_reset="earliest",
        processing_guarantee="at_least_once",
    )
    source = app.topic(*config["topics"], key_type=bytes, value_type=bytes, value_serializer="raw")
    count: int = config["count"]
    marks: dict[str, float] = {}
    received = 0

    @app.agent(source, concurrency=1)
    async def nothing(stream: Any) -> None:
        nonlocal received
        wait = config["batch_wait_ms"] / 1000
        async for batch in stream.take_events(config["batch_size"], within=wait):
            if not marks:
                marks["first"] = time.perf_counter()
                marks["first_batch"] = len(batch)
            received += len(batch)
            if received >= count:
                marks["last"] = time.perf_counter()
                result = json.dumps({"received": received, **marks})
                await asyncio.to_thread(Path(config["result"]).write_text, result, "utf-8")
                os.kill(os.getpid(), signal.SIGTERM)  # a clean Faust shutdown

    worker = faust.Worker(app, loglevel="warning", redirect_stdouts=False)
    worker.spinner = None
    worker.execute_from_commandline()


if __name__ == "__main__":
    main(sys.argv[1:])
