"""Provenance headers: who published an event, in which order, and the bytes they signed.

Every record a :class:`producers.FeedProducer` writes carries, next to the CloudEvents
attributes, three extension attributes (Kafka binary mode, so ``ce_`` headers):

- ``ce_sequence``: the publisher's gap-free sequence number for the event's source, in decimal
  (the CloudEvents *sequence* extension);
- ``ce_keyid``: the id of the publisher's Ed25519 key (16 hex digits of SHA-256 of the raw
  public key);
- ``ce_signature``: the base64 Ed25519 signature of :func:`signed_message`.

The signed message binds the exact stored value bytes to the id, type, source and sequence, so
moving a body under another envelope, or renumbering it, breaks the signature.
"""

from __future__ import annotations

__all__ = [
    "KEY_ID_HEADER",
    "SEQUENCE_HEADER",
    "SIGNATURE_HEADER",
    "Provenance",
    "provenance",
    "signed_message",
]

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

SEQUENCE_HEADER: Final = "ce_sequence"
KEY_ID_HEADER: Final = "ce_keyid"
SIGNATURE_HEADER: Final = "ce_signature"
_DOMAIN: Final = b"disruptfeed-event-v1"
_MAX_SEQUENCE_DIGITS: Final = 19
"""Longer ce_sequence values are malformed: no publisher numbers 10**19 events (and int()
refuses more than 4,300 digits)."""


def signed_message(
    value: bytes, event_id: bytes, ce_type: bytes, source: bytes, sequence: bytes
) -> bytes:
    """The bytes a publisher signs: a domain tag, the envelope fields, then the stored value.

    The envelope fields cannot hold a NUL (ids are UUIDs, types and sources are validated
    text, the sequence is decimal), so NUL separators make the encoding unambiguous.
    """
    return b"\0".join((_DOMAIN, event_id, ce_type, source, sequence, value))


@dataclass(frozen=True, slots=True)
class Provenance:
    """The provenance headers of one record, as found (any of them may be missing)."""

    event_id: bytes = b""
    ce_type: bytes = b""
    source: bytes = b""
    sequence: int | None = None
    key_id: str | None = None
    signature: bytes | None = None

    def message(self, value: bytes) -> bytes:
        """The signed message this record's headers and ``value`` make."""
        seq = b"" if self.sequence is None else str(self.sequence).encode()
        return signed_message(value, self.event_id, self.ce_type, self.source, seq)


def provenance(headers: Iterable[tuple[str, bytes | None]]) -> Provenance:
    """Read the provenance headers of a record; malformed ones read as missing.

    Of repeated headers the last counts; a header with no value (Kafka allows one; aiokafka
    reads it as None) is missing.
    """
    last: dict[str, bytes | None] = {}
    for name, raw in headers:
        if name in _WANTED:
            last[name] = raw
    found = {name: raw for name, raw in last.items() if raw is not None}
    sequence: int | None = None
    raw_seq = found.get(SEQUENCE_HEADER)
    if raw_seq is not None and raw_seq.isdigit() and len(raw_seq) <= _MAX_SEQUENCE_DIGITS:
        sequence = int(raw_seq)
    signature: bytes | None = None
    raw_sig = found.get(SIGNATURE_HEADER)
    if raw_sig is not None:
        try:
            signature = base64.b64decode(raw_sig, validate=True)
        except (binascii.Error, ValueError):
            signature = b""
    key = found.get(KEY_ID_HEADER)
    return Provenance(
        event_id=found.get("ce_id", b""),
        ce_type=found.get("ce_type", b""),
        source=found.get("ce_source", b""),
        sequence=sequence,
        key_id=key.decode("ascii", "replace") if key is not None else None,
        signature=signature,
    )


_WANTED: Final = frozenset(
    {"ce_id", "ce_type", "ce_source", SEQUENCE_HEADER, KEY_ID_HEADER, SIGNATURE_HEADER}
)
