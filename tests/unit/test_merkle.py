"""The Merkle tree against RFC 6962's reference roots, and against a recursive definition."""

from __future__ import annotations

import pytest

from disruptfeed.audit._merkle import EMPTY_ROOT, MerkleTree, leaf_hash, node_hash

pytestmark = pytest.mark.unit

# The inputs and tree heads of the Certificate Transparency reference tests (RFC 6962 hashing).
LEAVES = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
)]  # fmt: skip
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1, written as the RFC writes it."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaf_hash(leaves[0])
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return node_hash(_mth(leaves[:k]), _mth(leaves[k:]))


def test_roots_match_the_reference_tree_heads_at_every_size() -> None:
    tree = MerkleTree()
    assert tree.root().hex() == ROOTS[0]
    for size, leaf in enumerate(LEAVES, start=1):
        tree.append(leaf)
        assert tree.root().hex() == ROOTS[size], size


def test_every_size_up_to_70_matches_the_recursive_definition() -> None:
    leaves = [bytes([i, i * 7 % 256]) for i in range(70)]
    tree = MerkleTree()
    for size, leaf in enumerate(leaves, start=1):
        tree.append(leaf)
        assert tree.root() == _mth(leaves[:size]), size


def test_a_restored_tree_goes_on_as_the_original() -> None:
    tree = MerkleTree()
    for leaf in LEAVES[:5]:
        tree.append(leaf)
    resumed = MerkleTree.restore(tree.size, tree.state())
    for leaf in LEAVES[5:]:
        tree.append(leaf)
        resumed.append(leaf)
    assert resumed.root().hex() == ROOTS[8]
    with pytest.raises(ValueError, match="does not describe 6 leaves"):
        MerkleTree.restore(6, tree.state())


def test_one_changed_byte_changes_the_root() -> None:
    a, b = MerkleTree(), MerkleTree()
    for leaf in LEAVES:
        a.append(leaf)
        b.append(leaf if leaf != LEAVES[4] else b"\x30\x32")
    assert a.root() != b.root()
