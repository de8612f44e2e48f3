"""``audit verify``: recompute the Merkle tree from the history and hold it against checkpoints.

Like ``aws cloudtrail validate-logs``: every checkpoint's signature (from a trusted key) and its
link to the one before are checked, then every record each checkpoint covers is read again and
hashed. For each partition range a checkpoint added, a different count means events are
missing (fewer) or were added (more); the same count with another root, whether reordered
or other bytes means altered (without a hash per event, a swap of two events is found as an
alteration of their range, not told apart from one). Event ids seen twice are duplicates. Records
after the last checkpoint are counted as not yet covered, which is not a failure. Offsets
skipped by transaction markers are not records, so they are never counted as missing.
"""

from __future__ import annotations

__all__ = ["Finding", "VerifyReport", "select", "verify"]

import base64
import binascii
import contextlib
import datetime as dt
from bisect import bisect_left
from collections.abc import Callable
from typing import Final

import orjson
from cryptography.exceptions import InvalidSignature

from consumers._kafka import start_consumer
from disruptfeed._keys import TrustedKey
from disruptfeed.audit._checkpoint import Checkpoint, ordered, read_spans
from disruptfeed.audit._findings import Finding, VerifyReport
from disruptfeed.audit._merkle import MerkleTree, leaf_hash
from disruptfeed.audit._origin import OriginChecker
from disruptfeed.settings import Settings
from disruptfeed.topics import EVENT_TOPICS


def select(
    checkpoints: list[Checkpoint], since: dt.datetime | None, until: dt.datetime | None
) -> tuple[Checkpoint | None, list[Checkpoint]]:
    """The checkpoints made in ``[since, until]``, and the one before them (their base).

    Like ``validate-logs --start-time/--end-time``: the base's signed tree state is where
    the recomputation starts, so a range is verified without reading what came before it.
    """
    base: Checkpoint | None = None
    chosen: list[Checkpoint] = []
    for cp in checkpoints:
        if since is not None and cp.created_at < since:
            base = cp
        elif until is None or cp.created_at <= until:
            chosen.append(cp)
    return base, chosen


def check_chain(
    checkpoints: list[Checkpoint],
    keys: dict[str, TrustedKey],
    report: VerifyReport,
    base: Checkpoint | None = None,
) -> None:
    """Signatures, sequence numbers and links, without reading any event."""
    before = base
    for cp in checkpoints:
        where = f"checkpoint {cp.seq}"
        key = keys.get(cp.key_id)
        if key is None:
            report.findings.append(
                Finding("unknown-key", where, f"signed by key {cp.key_id}, which is not trusted")
            )
        else:
            try:
                key.public.verify(base64.b64decode(cp.signature, validate=True), cp.signed_bytes())
            except (InvalidSignature, binascii.Error):
                report.findings.append(
                    Finding("bad-signature", where, "its signature does not match its content")
                )
            if key.retired_at is not None and cp.created_at > key.retired_at:
                report.findings.append(
                    Finding("retired-key", where, f"signed by {cp.key_id} after its retirement")
                )
        expected_seq = 1 if before is None else before.seq + 1
        if cp.seq != expected_seq:
            missing = cp.seq - expected_seq
            report.findings.append(
                Finding(
                    "missing-checkpoint",
                    where,
                    f"expected checkpoint {expected_seq} before it",
                    max(missing, 1),
                )
            )
        elif (before.digest() if before else None) != cp.previous:
            report.findings.append(
                Finding("broken-chain", where, "its link to the previous checkpoint does not match")
            )
        before = cp


async def verify(
    settings: Settings,
    checkpoints: list[Checkpoint],
    keys: dict[str, TrustedKey],
    on_progress: Callable[[int], object] | None = None,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> VerifyReport:
    """Check the chain, then recompute every (selected) checkpoint from the history topics.

    Every record read is also checked for its publisher's signature and sequence number.
    Without ``until``, the records after the last checkpoint are read for those checks too
    (they are counted as not yet covered, which is no failure).
    """
    base, chosen = select(checkpoints, since, until)
    report = VerifyReport(checkpoints=len(chosen))
    check_chain(chosen, keys, report, base)
    origins = OriginChecker(keys, from_start=base is None)
    last = chosen[-1] if chosen else base
    with_tail = last is not None and last is checkpoints[-1]
    # Every partition is read once, over what the chosen checkpoints cover (and the tail).
    covered: dict[str, tuple[int, int]] = {}
    for cp in chosen:
        for pkey, span in cp.ranges.items():
            low, high = covered.get(pkey, (span.start, span.end))
            covered[pkey] = (min(low, span.start), max(high, span.end))
    spans = {}
    for pkey, (low, high) in covered.items():
        name, partition = pkey.rsplit(":", 1)
        spans[(settings.topic(name), int(partition))] = (low, high)
    if with_tail and last is not None:
        for pkey, end in last.ends.items():
            name, partition = pkey.rsplit(":", 1)
            tp = (settings.topic(name), int(partition))
            spans[tp] = (spans.get(tp, (end, end))[0], _NO_END)
    names = {settings.topic(name): name for name in EVENT_TOPICS}
    read: dict[str, tuple[list[int], list[bytes]]] = {}
    seen: dict[str, str] = {}
    consumer = await start_consumer(settings)
    try:
        pending = 0
        async for record in read_spans(consumer, spans):
            pkey = f"{names[record.topic]}:{record.partition}"
            value = record.value or b""
            position = f"{pkey}@{record.offset}"
            _note_id(value, position, seen, report)
            origins.observe(record, pkey, position)
            if record.offset < covered.get(pkey, (0, 0))[1]:
                offsets, leaves = read.setdefault(pkey, ([], []))
                offsets.append(record.offset)
                leaves.append(leaf_hash(value))
                pending += 1
                if pending == 1_000 and on_progress is not None:
                    on_progress(pending)
                    pending = 0
            else:
                report.not_yet_covered += 1
        if on_progress is not None and pending:
            on_progress(pending)
    except BaseException:
        origins.close()
        raise
    finally:
        await consumer.stop()
    _recompute(chosen, base, read, report)
    origins.finish(report)
    return report


_NO_END: Final = 2**63 - 1


def _recompute(
    chosen: list[Checkpoint],
    base: Checkpoint | None,
    read: dict[str, tuple[list[int], list[bytes]]],
    report: VerifyReport,
) -> None:
    """Rebuild each chosen checkpoint's ranges and tree from the leaves read."""
    tree = MerkleTree.restore(base.tree_size, base.peaks) if base else MerkleTree()
    for cp in chosen:
        for pkey in ordered(cp.ranges):
            span = cp.ranges[pkey]
            offsets, all_leaves = read.get(pkey, ([], []))
            leaves = all_leaves[bisect_left(offsets, span.start) : bisect_left(offsets, span.end)]
            where = f"checkpoint {cp.seq}, {pkey} offsets {span.start}..{span.end - 1}"
            for leaf in leaves:
                tree.append_hash(leaf)
            report.events_verified += len(leaves)
            _compare_range(leaves, span.count, span.root, where, report)
        if tree.size != cp.tree_size or tree.root().hex() != cp.root:
            report.findings.append(
                Finding(
                    "root-mismatch",
                    f"checkpoint {cp.seq}",
                    f"recomputed {tree.size} events, root {tree.root().hex()[:16]}...; "
                    f"it says {cp.tree_size}, {cp.root[:16]}...",
                    0,
                )
            )
            # Go on from the checkpoint's own tree, so one bad range does not fail every
            # later checkpoint too; a forged checkpoint may not even describe a tree.
            with contextlib.suppress(ValueError):
                tree = MerkleTree.restore(cp.tree_size, cp.peaks)


def _compare_range(
    leaves: list[bytes], count: int, root: str, where: str, report: VerifyReport
) -> None:
    part = MerkleTree()
    for leaf in leaves:
        part.append_hash(leaf)
    if part.root().hex() == root and part.size == count:
        return
    if len(leaves) < count:
        report.findings.append(
            Finding(
                "missing",
                where,
                f"{count - len(leaves)} of {count} events are gone",
                count - len(leaves),
            )
        )
    elif len(leaves) > count:
        report.findings.append(
            Finding(
                "added",
                where,
                f"{len(leaves) - count} events more than signed",
                len(leaves) - count,
            )
        )
    else:
        report.findings.append(
            Finding(
                "altered",
                where,
                f"the {count} events hash differently than signed (changed bytes, or reordered)",
            )
        )


def _note_id(value: bytes, position: str, seen: dict[str, str], report: VerifyReport) -> None:
    try:
        event_id = orjson.loads(value).get("event_id")
    except (orjson.JSONDecodeError, AttributeError):
        return
    if not isinstance(event_id, str):
        return
    first = seen.setdefault(event_id, position)
    if first != position:
        report.findings.append(
            Finding("duplicated", position, f"event {event_id} was already stored at {first}")
        )
