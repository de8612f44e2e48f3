"""Signed checkpoints of the event history: a Merkle root over every stored event so far.

A checkpoint extends the previous one: for each event topic partition, in (topic, partition)
order, the records from the previous checkpoint's end offset to the current end (committed
records only) are appended as leaves, their exact value bytes hashed as in RFC 6962. It holds
the tree's size and root, the per-partition end offsets, what each partition added (offsets,
count and the root of just those leaves, so a verifier can say *where* history differs), the
SHA-256 of the previous checkpoint (a chain: none can be dropped or replaced unseen), a key id
and an Ed25519 signature over all of that. Checkpoints go to the checkpoint topic and, as
``checkpoint-<seq>.json``, to the checkpoint directory.
"""

from __future__ import annotations

__all__ = [
    "Checkpoint",
    "PartitionRange",
    "latest_checkpoint",
    "load_checkpoint_files",
    "make_checkpoint",
    "read_checkpoints",
    "read_range",
    "read_spans",
]

import base64
import datetime as dt
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

from consumers._kafka import partitions_of, read_to_end, start_consumer, start_producer
from disruptfeed._keys import SigningKey
from disruptfeed.audit._merkle import MerkleTree, leaf_hash
from disruptfeed.errors import ConfigurationError
from disruptfeed.settings import Settings
from disruptfeed.topics import CHECKPOINTS, EVENT_TOPICS


class PartitionRange(BaseModel):
    """What one partition added to the tree in one checkpoint: offsets ``[start, end)``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: int
    end: int
    count: int
    root: str


class Checkpoint(BaseModel):
    """One signed checkpoint (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1] = 1
    seq: int
    created_at: AwareDatetime
    tree_size: int
    root: str
    peaks: list[tuple[int, str]]
    ends: dict[str, int]
    ranges: dict[str, PartitionRange]
    previous: str | None
    key_id: str
    signature: str = ""

    def signed_bytes(self) -> bytes:
        """The canonical bytes the signature covers (everything but the signature)."""
        body = self.model_dump(mode="json", exclude={"signature"})
        return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)

    def to_bytes(self) -> bytes:
        """The checkpoint as stored (canonical JSON, signature included)."""
        return orjson.dumps(self.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)

    def digest(self) -> str:
        """SHA-256 of the stored bytes: the next checkpoint's ``previous``."""
        return hashlib.sha256(self.to_bytes()).hexdigest()


def partition_key(topic: str, partition: int) -> str:
    """``account-disrupted:0``: topic names without the deployment's prefix."""
    return f"{topic}:{partition}"


def ordered(keys: Any) -> list[str]:
    """Partition keys in leaf order: by topic, then partition number."""
    return sorted(keys, key=lambda k: (k.rsplit(":", 1)[0], int(k.rsplit(":", 1)[1])))


async def read_range(
    consumer: Any, topic: str, partition: int, start: int, end: int
) -> AsyncIterator[Any]:
    """The records of one partition with offsets in ``[start, end)`` (end: a captured end)."""
    from aiokafka import TopicPartition

    tp = TopicPartition(topic, partition)
    consumer.assign([tp])
    consumer.seek(tp, start)
    # A partition now shorter than the signed end (records dropped) must end the read, not
    # wait forever for offsets that will never come.
    end = min(end, (await consumer.end_offsets([tp]))[tp])
    while await consumer.position(tp) < end:
        batches = await consumer.getmany(tp, timeout_ms=1_000, max_records=5_000)
        for record in batches.get(tp, ()):
            if record.offset >= end:
                return
            yield record


async def read_spans(
    consumer: Any, spans: dict[tuple[str, int], tuple[int, int]]
) -> AsyncIterator[Any]:
    """The records of several partitions, offsets ``[start, end)`` each, fetched together.

    Records come in offset order within a partition, interleaved across partitions. One
    assignment for all partitions: switching the assignment per partition restarts the fetcher
    and costs a fetch wait each time. An ``end`` past a partition's actual end is cut to it,
    so a partition that lost records ends the read instead of waiting for them.
    """
    from aiokafka import TopicPartition

    wanted = {TopicPartition(topic, p): span for (topic, p), span in spans.items()}
    if not wanted:
        return
    actual = await consumer.end_offsets(list(wanted))
    consumer.assign(list(wanted))
    left: dict[Any, int] = {}
    for tp, (start, signed_end) in wanted.items():
        stop = min(signed_end, actual[tp])
        if start < stop:
            consumer.seek(tp, start)
            left[tp] = stop
        else:
            consumer.pause(tp)
    while left:
        batches = await consumer.getmany(*left, timeout_ms=1_000, max_records=10_000)
        for tp, records in batches.items():
            stop = left.get(tp, -1)
            for record in records:
                if record.offset >= stop:
                    break
                yield record
        for tp in list(left):
            if await consumer.position(tp) >= left[tp]:
                del left[tp]
                consumer.pause(tp)


async def read_checkpoints(settings: Settings) -> list[tuple[int, bytes]]:
    """Every record of the checkpoint topic as (offset, value), oldest first."""
    consumer = await start_consumer(settings)
    try:
        topic = settings.topic(CHECKPOINTS)
        return [
            (r.offset, r.value or b"")
            async for r in read_to_end(consumer, topic, settings.bootstrap)
        ]
    finally:
        await consumer.stop()


def parse_checkpoint(data: bytes, where: str) -> Checkpoint:
    """A checkpoint from its stored bytes.

    Raises:
        ConfigurationError: truncated, not JSON, or not a checkpoint, with where it came from.
    """
    try:
        return Checkpoint.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        reason = (
            first["msg"] if first["type"] != "json_invalid" else "not complete JSON (truncated?)"
        )
        raise ConfigurationError(
            f"{where} is not a readable checkpoint: {reason}; restore it from the checkpoint "
            "topic or another copy, or verify without --checkpoints"
        ) from None


async def latest_checkpoint(settings: Settings) -> Checkpoint | None:
    """The newest checkpoint on the topic, or None."""
    records = await read_checkpoints(settings)
    if not records:
        return None
    offset, value = records[-1]
    return parse_checkpoint(value, f"checkpoint record at offset {offset}")


def load_checkpoint_files(directory: Path) -> list[Checkpoint]:
    """Every ``checkpoint-*.json`` of ``directory``, by sequence number.

    Raises:
        ConfigurationError: the directory is missing or a file is unreadable or truncated.
    """
    if not directory.is_dir():
        raise ConfigurationError(
            f"no checkpoint directory {directory}; pass the one checkpoints were written to"
        )
    found = []
    for path in sorted(directory.glob("checkpoint-*.json")):
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigurationError(f"cannot read {path}: {exc.strerror}") from None
        found.append(parse_checkpoint(data, str(path)))
    return sorted(found, key=lambda c: c.seq)


async def make_checkpoint(settings: Settings, key: SigningKey) -> Checkpoint:
    """Extend the latest checkpoint to the history's current end, sign, publish and file it."""
    previous = await latest_checkpoint(settings)
    tree = (
        MerkleTree() if previous is None else MerkleTree.restore(previous.tree_size, previous.peaks)
    )
    ends = dict(previous.ends) if previous is not None else {}
    ranges: dict[str, PartitionRange] = {}
    consumer = await start_consumer(settings)
    try:
        from aiokafka import TopicPartition

        current: dict[str, tuple[str, int, int]] = {}
        for name in EVENT_TOPICS:
            topic = settings.topic(name)
            parts = [
                TopicPartition(topic, p)
                for p in await partitions_of(consumer, topic, settings.bootstrap)
            ]
            for tp, end in (await consumer.end_offsets(parts)).items():
                current[partition_key(name, tp.partition)] = (topic, tp.partition, end)
        spans = {(t, p): (ends.get(pkey, 0), end) for pkey, (t, p, end) in current.items()}
        names = {settings.topic(name): name for name in EVENT_TOPICS}
        leaves: dict[str, list[bytes]] = {pkey: [] for pkey in current}
        async for record in read_spans(consumer, spans):
            pkey = partition_key(names[record.topic], record.partition)
            leaves[pkey].append(leaf_hash(record.value or b""))
        for pkey in ordered(current):
            part = MerkleTree()
            for leaf in leaves[pkey]:
                tree.append_hash(leaf)
                part.append_hash(leaf)
            ranges[pkey] = PartitionRange(
                start=ends.get(pkey, 0), end=current[pkey][2], count=part.size,
                root=part.root().hex(),
            )  # fmt: skip
            ends[pkey] = current[pkey][2]
    finally:
        await consumer.stop()
    unsigned = Checkpoint(
        seq=1 if previous is None else previous.seq + 1,
        created_at=dt.datetime.now(dt.UTC),
        tree_size=tree.size,
        root=tree.root().hex(),
        peaks=tree.state(),
        ends=ends,
        ranges=ranges,
        previous=None if previous is None else previous.digest(),
        key_id=key.key_id,
    )
    signature = base64.b64encode(key.sign(unsigned.signed_bytes())).decode()
    checkpoint = unsigned.model_copy(update={"signature": signature})
    producer = await start_producer(settings)
    try:
        await producer.send_and_wait(
            settings.topic(CHECKPOINTS), key=b"checkpoint", value=checkpoint.to_bytes()
        )
    finally:
        await producer.stop()
    _write_file(
        settings.checkpoint_path / f"checkpoint-{checkpoint.seq:08d}.json", checkpoint.to_bytes()
    )
    return checkpoint


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)
