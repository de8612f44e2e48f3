"""An append-only Merkle tree hashed as in RFC 6962 (section 2.1) and RFC 9162 (section 2.1.1).

``leaf = SHA-256(0x00 || data)``, ``node = SHA-256(0x01 || left || right)``, the tree over ``n``
leaves splits at the largest power of two below ``n``, and the empty tree's hash is
``SHA-256("")``. The tree keeps only the roots of its perfect subtrees (one per bit set in its
size), so memory is O(log n) whatever the history's length, and the root of every prefix can be
taken as leaves arrive: a checkpoint is the root at its size.
"""

from __future__ import annotations

__all__ = ["MerkleTree", "leaf_hash", "node_hash"]

import hashlib

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """The hash of one leaf (the exact stored bytes of one record)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an interior node."""
    return hashlib.sha256(b"\x01" + left + right).digest()


class MerkleTree:
    """Leaves appended one by one; :meth:`root` is RFC 6962's Merkle Tree Hash of them all."""

    __slots__ = ("_peaks", "size")

    def __init__(self) -> None:
        self.size = 0
        # (height, hash) of the perfect subtrees, left to right, heights strictly decreasing.
        self._peaks: list[tuple[int, bytes]] = []

    def append(self, data: bytes) -> None:
        """Add the leaf for ``data``."""
        self.append_hash(leaf_hash(data))

    def append_hash(self, leaf: bytes) -> None:
        """Add a leaf whose hash is already known."""
        height, value = 0, leaf
        peaks = self._peaks
        while peaks and peaks[-1][0] == height:
            value = node_hash(peaks.pop()[1], value)
            height += 1
        peaks.append((height, value))
        self.size += 1

    def root(self) -> bytes:
        """The tree hash at the current size."""
        if not self._peaks:
            return EMPTY_ROOT
        value = self._peaks[-1][1]
        for _, left in reversed(self._peaks[:-1]):
            value = node_hash(left, value)
        return value

    def state(self) -> list[tuple[int, str]]:
        """The peaks, hex-encoded: with :meth:`restore`, resume a tree without its leaves."""
        return [(height, value.hex()) for height, value in self._peaks]

    @classmethod
    def restore(cls, size: int, peaks: list[tuple[int, str]]) -> MerkleTree:
        """The tree that :meth:`state` described at ``size`` leaves.

        Raises:
            ValueError: the peaks do not add up to ``size`` leaves.
        """
        tree = cls()
        tree._peaks = [(int(h), bytes.fromhex(v)) for h, v in peaks]
        tree.size = size
        heights = [h for h, _ in tree._peaks]
        if sum(1 << h for h in heights) != size or heights != sorted(set(heights), reverse=True):
            raise ValueError(f"the tree state does not describe {size} leaves")
        return tree
