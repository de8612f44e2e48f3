"""Per-event checks of ``audit verify``: who signed each event, and each source's sequence.

Every record must carry its publisher's signature (``ce_keyid``, ``ce_signature``) over the
stored bytes and envelope (:func:`schemas._provenance.signed_message`), by a trusted key that
was not retired when the record was appended; and its source's sequence number
(``ce_sequence``). Over all records read, each source's numbers must run without gaps, once
each, and in order within a partition (a publisher appends a partition's records in order).

Signatures are checked in a thread pool, a chunk at a time, while records keep streaming in:
an Ed25519 verification costs about 100 us and ``cryptography`` releases the GIL for it, so
it is the one part of a verification that scales with the auditor's cores.
"""

from __future__ import annotations

__all__ = ["OriginChecker"]

import datetime as dt
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from disruptfeed._keys import TrustedKey
from disruptfeed.audit._findings import Finding, VerifyReport
from schemas._provenance import provenance

_CHUNK: Final = 2_000
Check = tuple[Ed25519PublicKey, bytes, bytes, str]
"""A key, a signature, the message it should sign, and the record's position."""


def _bad(checks: list[Check]) -> list[str]:
    """Positions whose signature does not verify (runs in a pool thread)."""
    bad = []
    for public, signature, message, position in checks:
        try:
            public.verify(signature, message)
        except InvalidSignature:
            bad.append(position)
    return bad


@dataclass(slots=True)
class _Source:
    numbers: dict[int, str] = field(default_factory=dict)
    last_in_partition: dict[str, tuple[int, str]] = field(default_factory=dict)


class OriginChecker:
    """Collects the per-event findings while records stream past, then the sequence gaps."""

    def __init__(self, keys: dict[str, TrustedKey], *, from_start: bool) -> None:
        self._keys = keys
        self._retired_ms = {
            kid: int(key.retired_at.timestamp() * 1000)
            for kid, key in keys.items()
            if key.retired_at is not None
        }
        self._from_start = from_start
        self._sources: dict[bytes, _Source] = {}
        self.findings: list[Finding] = []
        self._pending: list[Check] = []
        self._futures: list[Future[list[str]]] = []
        self._pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 2)

    def observe(self, record: Any, partition: str, position: str) -> None:
        """Check one record's signature and note its sequence number."""
        origin = provenance(record.headers or ())
        value = record.value or b""
        if origin.signature is None or origin.key_id is None:
            self.findings.append(Finding("unsigned", position, "the record has no signature"))
        else:
            key = self._keys.get(origin.key_id)
            if key is None:
                self.findings.append(
                    Finding("unknown-key", position, f"signed by untrusted key {origin.key_id}")
                )
            else:
                check = (key.public, origin.signature, origin.message(value), position)
                self._pending.append(check)
                if len(self._pending) >= _CHUNK:
                    self._futures.append(self._pool.submit(_bad, self._pending))
                    self._pending = []
                retired = self._retired_ms.get(origin.key_id)
                if retired is not None and record.timestamp > retired:
                    when = dt.datetime.fromtimestamp(retired / 1000, dt.UTC).isoformat()
                    self.findings.append(
                        Finding(
                            "retired-key",
                            position,
                            f"signed by key {origin.key_id} after its retirement at {when}",
                        )
                    )
        if origin.sequence is None:
            self.findings.append(Finding("unsequenced", position, "no ce_sequence header"))
            return
        source = self._sources.setdefault(origin.source, _Source())
        first = source.numbers.setdefault(origin.sequence, position)
        name = origin.source.decode("utf-8", "replace")
        if first != position:
            self.findings.append(
                Finding(
                    "duplicated",
                    position,
                    f"{name} sequence {origin.sequence} was already stored at {first}",
                )
            )
        before = source.last_in_partition.get(partition)
        if before is not None and origin.sequence < before[0]:
            self.findings.append(
                Finding(
                    "reordered",
                    position,
                    f"{name} sequence {origin.sequence} comes after {before[0]} (at {before[1]})",
                )
            )
        source.last_in_partition[partition] = (origin.sequence, position)

    def close(self) -> None:
        """Stop the signature checks (after a failure: :meth:`finish` closes too)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def finish(self, report: VerifyReport) -> None:
        """Wait for the signature checks; add every finding and each source's gaps."""
        try:
            bad = _bad(self._pending)
            for future in self._futures:
                bad += future.result()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
        report.findings.extend(
            Finding("bad-signature", position, "its signature does not match it")
            for position in bad
        )
        report.findings.extend(self.findings)
        for raw, source in sorted(self._sources.items()):
            numbers = sorted(source.numbers)
            low = 1 if self._from_start else numbers[0]
            name = raw.decode("utf-8", "replace")
            for start, end in _gaps(numbers, low):
                report.findings.append(
                    Finding(
                        "missing",
                        f"source {name}",
                        f"sequence numbers {start}..{end} are not in the history",
                        end - start + 1,
                    )
                )


def _gaps(numbers: list[int], low: int) -> list[tuple[int, int]]:
    gaps = []
    expected = low
    for n in numbers:
        if n > expected:
            gaps.append((expected, n - 1))
        expected = max(expected, n + 1)
    return gaps
