"""A worker's local table state, checked against the cluster before Faust opens it.

Faust keeps, in each RocksDB table file, the last changelog offset it wrote there. A file whose
offset is past the end of its changelog partition (the changelog was deleted and made again, or
the broker's data was reset under the same cluster id) makes Faust stop at start with
``ConsistencyError``. Such state describes another history: it is discarded, with one WARNING,
and Faust rebuilds the tables from the changelog.
"""

from __future__ import annotations

__all__ = ["discard_stale_state", "persisted_offsets"]

import logging
import re
import shutil
from pathlib import Path
from typing import Final

from disruptfeed._aiokafka import start_consumer_client, stop_client
from disruptfeed.settings import Settings

log = logging.getLogger(__name__)

_OFFSET_KEY: Final = b"__faust\0offset__"  # faust.stores.rocksdb.Store.offset_key
_TABLE_FILE: Final = re.compile(r"^(?P<table>.+)-(?P<partition>\d+)\.db$")


def persisted_offsets(directory: Path) -> dict[tuple[str, int], int]:
    """(table, partition) -> the changelog offset Faust persisted in that table file."""
    import rocksdict

    tables = directory / "v1" / "tables"
    found: dict[tuple[str, int], int] = {}
    if not tables.is_dir():
        return found
    for path in sorted(tables.iterdir()):
        match = _TABLE_FILE.match(path.name)
        if match is None or not path.is_dir():
            continue
        db = rocksdict.Rdict(
            str(path),
            options=rocksdict.Options(raw_mode=True),
            access_type=rocksdict.AccessType.read_only(),
        )
        try:
            raw = db.get(_OFFSET_KEY)
        finally:
            db.close()
        if raw is not None:
            found[(match["table"], int(match["partition"]))] = int(raw)
    return found


async def discard_stale_state(settings: Settings, directory: Path, app_id: str) -> bool:
    """Remove ``directory`` when an offset in it is past its changelog's end; True if so."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    offsets = persisted_offsets(directory)
    if not offsets:
        return False
    consumer = AIOKafkaConsumer(**settings.client_kwargs(), enable_auto_commit=False)
    await start_consumer_client(consumer)
    try:
        parts = {key: TopicPartition(f"{app_id}-{key[0]}-changelog", key[1]) for key in offsets}
        known = set(await consumer.topics())
        present = [tp for tp in parts.values() if tp.topic in known]
        ends = await consumer.end_offsets(present) if present else {}
    finally:
        await stop_client(consumer)
    stale = [
        f"{table}-{partition}: {offset} >= {ends.get(parts[(table, partition)], 0)}"
        for (table, partition), offset in sorted(offsets.items())
        if offset >= ends.get(parts[(table, partition)], 0)
    ]
    if not stale:
        return False
    log.warning(
        "discarding the local worker state in %s: its changelog offsets are past the cluster's "
        "changelog (%s); the tables are rebuilt from the changelog",
        directory,
        ", ".join(stale[:3]) + (" ..." if len(stale) > 3 else ""),
    )
    shutil.rmtree(directory)
    return True
