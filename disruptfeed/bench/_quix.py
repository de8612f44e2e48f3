"""The quix-pipeline case: the worker's rolling count per region, written with Quix Streams.

The app consumes the account-disrupted topic from the beginning, decodes each value as JSON,
and does per record what the Faust worker does to count it: skip an event id already seen
(a RocksDB state entry per event id, with its changelog, like the worker's ``events`` table),
keep a per-region total in state, and add the event to the same in-memory
:class:`streams.CountStore` (1 h, 24 h, 7 d rolling windows in event time). It does not validate
against the schemas nor evaluate alert rules. It runs in its own process (``python -m
disruptfeed.bench._quix CONFIG``), like the worker, and writes its timing to a result file.
"""

from __future__ import annotations

__all__ = ["main", "quix_rate"]

import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

from disruptfeed.bench._child import run_child
from disruptfeed.bench._clients import ACCOUNT_TOPIC, rdkafka_config
from disruptfeed.bench._errors import BenchError
from disruptfeed.settings import Settings


def quix_rate(settings: Settings, count: int, workdir: Path) -> tuple[float, dict[str, Any]]:
    """Run the Quix app over a backlog of ``count`` account records; events per second.

    The clock starts when the first record has been processed and stops at the last, like
    feed-pipeline's, so start-up, rebalance and state recovery are left out.
    """
    config = {
        "connection": {k: v for k, v in rdkafka_config(settings).items() if k != "client.id"},
        "topic": settings.topic(ACCOUNT_TOPIC),
        "group": f"{settings.topic_prefix}-quix",
        "state_dir": str(workdir / "state"),
        "count": count,
        "grace_ms": settings.grace_seconds * 1000,
    }
    figures = run_child("disruptfeed.bench._quix", "the Quix app", config, workdir)
    if figures["processed"] != count:
        raise BenchError(f"the Quix app processed {figures['processed']} of {count} records")
    timed = figures["processed"] - 1
    seconds = figures["last"] - figures["first"]
    detail = {"timed_events": timed, "seconds": round(seconds, 3), "regions": figures["regions"]}
    return timed / seconds, detail


def main(argv: list[str]) -> None:
    """The Quix app: read the config file named by ``argv[0]``, process, write the result."""
    from quixstreams import Application, message_context
    from quixstreams.kafka.configuration import ConnectionConfig

    from schemas._alerts import to_ms
    from streams._windows import Counted, CountStore

    config = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    app = Application(
        broker_address=ConnectionConfig.from_librdkafka_dict(config["connection"]),
        consumer_group=config["group"],
        auto_offset_reset="earliest",
        state_dir=config["state_dir"],
        processing_guarantee="at-least-once",
        loglevel="WARNING",
    )
    topic = app.topic(config["topic"], value_deserializer="json", key_deserializer="str")
    store = CountStore(grace_ms=config["grace_ms"])
    marks: dict[str, float] = {}
    processed = 0

    def count(value: dict[str, Any], key: str, _ts: int, _headers: Any, state: Any) -> None:
        nonlocal processed
        event_id = value["event_id"]
        if not state.exists(event_id):  # state is scoped to the key (region): one row per id
            state.set(event_id, 1)
            state.set("total", state.get("total", 0) + 1)
            ctx = message_context()
            source = f"{ctx.topic}:{ctx.partition}"
            occurred = to_ms(dt.datetime.fromisoformat(value["occurred_at"]))
            late = store.classify(source, occurred)
            store.add(Counted(value["type"], key, occurred, value["accounts"], late, source))
        processed += 1
        marks.setdefault("first", time.perf_counter())
        marks["last"] = time.perf_counter()

    app.dataframe(topic).update(count, stateful=True, metadata=True)
    app.run(count=config["count"], timeout=60.0, collect=False)
    Path(config["result"]).write_text(
        json.dumps({"processed": processed, **marks, "regions": len(store.regions())}),
        encoding="utf-8",
    )


if __name__ == "__main__":
    main(sys.argv[1:])
