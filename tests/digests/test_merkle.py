"""The Merkle tree: RFC 6962 roots, inclusion paths, non-inclusion brackets, hostile proofs."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repp2p.digests.merkle import (
    EMPTY_ROOT,
    Bracket,
    MerkleTree,
    Opening,
    leaf_hash,
    node_hash,
    root_of,
    verify_absence,
    verify_inclusion,
)
from repp2p.errors import ProofError, ProofReason
from repp2p.records import EMPTY_MERKLE_ROOT


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1, written as the RFC does (the reference)."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:])).digest()


def _path(m: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 6962 section 2.1.1 PATH(m, D[n])."""
    n = len(leaves)
    if n <= 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*_path(m, leaves[:k]), _mth(leaves[k:])]
    return [*_path(m - k, leaves[k:]), _mth(leaves[:k])]


def _identity(data: bytes) -> bytes:
    return data


def _tree(n: int) -> MerkleTree:
    return MerkleTree([i.to_bytes(4, "big") for i in range(n)], _identity)


def _reason(fn, *args, **kw) -> ProofReason:
    with pytest.raises(ProofError) as info:
        fn(*args, **kw)
    return info.value.reason


def test_empty_root_is_the_hash_of_nothing_everywhere():
    assert EMPTY_ROOT == hashlib.sha256(b"").digest() == EMPTY_MERKLE_ROOT
    assert root_of([]) == EMPTY_ROOT == _tree(0).root


def test_domain_separation():
    assert leaf_hash(b"x") != hashlib.sha256(b"x").digest()
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    # An inner node's preimage is never a leaf's: 0x00 versus 0x01 first.
    assert node_hash(a, b) != leaf_hash(a + b)


@pytest.mark.parametrize("n", [*range(0, 34), 64, 65, 100])
def test_root_and_paths_match_rfc6962(n):
    leaves = [i.to_bytes(4, "big") for i in range(n)]
    tree = _tree(n)
    assert tree.root == _mth(leaves) == root_of(leaves)
    for m in range(n):
        opening = tree.opening(m)
        assert list(opening.path) == _path(m, leaves)
        verify_inclusion(opening, n, tree.root)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=40, unique=True))
def test_any_sorted_set_proves_every_member(items):
    tree = MerkleTree(sorted(items), _identity)
    assert tree.root == _mth(sorted(items))
    for i in range(tree.size):
        verify_inclusion(tree.opening(i), tree.size, tree.root)


def test_unsorted_or_duplicate_keys_are_refused():
    with pytest.raises(ValueError):
        MerkleTree([b"b", b"a"], _identity)
    with pytest.raises(ValueError):
        MerkleTree([b"a", b"a"], _identity)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13])
def test_tampered_inclusion_is_rejected_with_its_reason(n):
    tree = _tree(n)
    for m in range(n):
        good = tree.opening(m)
        assert _reason(verify_inclusion, good, n, b"\x00" * 32) is ProofReason.ROOT_MISMATCH
        other_leaf = Opening(m, good.leaf + b"!", good.path)
        assert _reason(verify_inclusion, other_leaf, n, tree.root) is ProofReason.ROOT_MISMATCH
        assert _reason(verify_inclusion, Opening(n, good.leaf, good.path), n, tree.root) is (
            ProofReason.BAD_INDEX
        )
        longer = Opening(m, good.leaf, (*good.path, b"\x00" * 32))
        assert _reason(verify_inclusion, longer, n, tree.root) is ProofReason.BAD_PATH
        if good.path:
            shorter = Opening(m, good.leaf, good.path[:-1])
            assert _reason(verify_inclusion, shorter, n, tree.root) in (
                ProofReason.BAD_PATH,
                ProofReason.ROOT_MISMATCH,
            )
            flipped = bytes([good.path[0][0] ^ 1]) + good.path[0][1:]
            bad = Opening(m, good.leaf, (flipped, *good.path[1:]))
            assert _reason(verify_inclusion, bad, n, tree.root) is ProofReason.ROOT_MISMATCH
        if n > 1:
            moved = Opening((m + 1) % n, good.leaf, good.path)
            with pytest.raises(ProofError):
                verify_inclusion(moved, n, tree.root)


def test_a_leaf_cannot_pass_for_an_inner_node():
    # The second-preimage attack domain separation stops: present the two child hashes of
    # the left half of a 4-leaf tree as the data of leaf 0 of a 2-leaf tree.
    tree = _tree(4)
    h = [leaf_hash(d) for d in tree.leaves]
    right_half = node_hash(h[2], h[3])
    assert node_hash(node_hash(h[0], h[1]), right_half) == tree.root  # what it would need
    fake = Opening(0, h[0] + h[1], (right_half,))
    assert _reason(verify_inclusion, fake, 2, tree.root) is ProofReason.ROOT_MISMATCH


def _absent_keys(keys: list[bytes]) -> list[bytes]:
    cands = [b"", b"\x00", b"\xff" * 41]
    for k in keys:
        cands += [k + b"\x00", k[:-1] if k else b"\x7f"]
    return sorted(set(c for c in cands if c not in keys))


@settings(max_examples=80, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=6), max_size=24, unique=True), st.data())
def test_non_inclusion_for_random_sorted_sets(items, data):
    keys = sorted(items)
    tree = MerkleTree(keys, _identity)
    n = tree.size
    lo = data.draw(st.integers(0, n))
    hi = data.draw(st.integers(lo, n))
    for key in _absent_keys(keys):
        if key in keys[lo:hi]:
            continue
        bracket = tree.bracket(key, lo, hi)
        verify_absence(key, bracket, lo=lo, hi=hi, size=n, root=tree.root, key_of=_identity)
    for i in range(lo, hi):
        with pytest.raises(KeyError):
            tree.bracket(keys[i], lo, hi)


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7])
def test_non_inclusion_at_the_edges(n):
    tree = MerkleTree([bytes([10 * (i + 1)]) for i in range(n)], _identity)
    for key in (b"\x00", b"\x05", b"\x0f", b"\xff"):
        if key in tree.keys:
            continue
        bracket = tree.bracket(key)
        if n == 0:
            assert bracket == Bracket(None, None)
        elif key < tree.keys[0]:
            assert bracket.left is None and bracket.right.index == 0
        elif key > tree.keys[-1]:
            assert bracket.right is None and bracket.left.index == n - 1
        verify_absence(key, bracket, lo=0, hi=n, size=n, root=tree.root, key_of=_identity)


def test_forged_brackets_are_rejected_with_their_reason():
    keys = [bytes([i]) for i in (10, 20, 30, 40, 50)]
    tree = MerkleTree(keys, _identity)
    n, root = tree.size, tree.root

    def check(key, bracket, lo=0, hi=n):
        return _reason(
            verify_absence, key, bracket, lo=lo, hi=hi, size=n, root=root, key_of=_identity
        )

    o = tree.opening
    # A present key cannot be bracketed by its neighbours...
    assert check(b"\x14", Bracket(o(0), o(1))) is ProofReason.NOT_BRACKETED
    assert check(b"\x14", Bracket(o(1), o(2))) is ProofReason.NOT_BRACKETED
    # ...nor by leaves that are not adjacent (skipping the one that holds it).
    assert check(b"\x14", Bracket(o(0), o(2))) is ProofReason.NOT_ADJACENT
    # A lone opening must be the range's first or last leaf.
    assert check(b"\x05", Bracket(None, o(1))) is ProofReason.NOT_ADJACENT
    assert check(b"\x60", Bracket(o(3), None)) is ProofReason.NOT_ADJACENT
    assert check(b"\x14", Bracket(None, None)) is ProofReason.NOT_ADJACENT
    # An empty range takes no openings; a range outside the tree is refused.
    assert check(b"\x14", Bracket(o(0), None), lo=2, hi=2) is ProofReason.NOT_ADJACENT
    assert check(b"\x14", Bracket(None, None), lo=3, hi=9) is ProofReason.BAD_INDEX
    # Openings outside the range do not count.
    assert check(b"\x05", Bracket(None, o(0)), lo=1, hi=3) is ProofReason.NOT_ADJACENT
    # A forged leaf in a correct position fails its path.
    fake = Opening(1, b"\x19", o(1).path)
    assert check(b"\x18", Bracket(o(0), fake)) is ProofReason.ROOT_MISMATCH


@given(
    st.recursive(
        st.none() | st.integers() | st.binary(max_size=40) | st.text(max_size=5),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
        ),
        max_leaves=12,
    )
)
def test_hostile_openings_raise_only_proof_errors(obj):
    for reader in (Opening.from_wire, Bracket.from_wire):
        try:
            reader(obj)
        except ProofError:
            pass


def test_opening_wire_round_trip_and_caps():
    tree = _tree(9)
    good = tree.opening(4)
    assert Opening.from_wire(good.to_wire()) == good
    bracket = tree.bracket(b"\x00\x00\x00\x04\x00")
    assert Bracket.from_wire(bracket.to_wire()) == bracket
    wire = good.to_wire()
    assert _reason(Opening.from_wire, dict(wire, leaf=b"x" * 1025)) is ProofReason.OVERSIZE
    assert _reason(Opening.from_wire, dict(wire, path=[b"\x00" * 32] * 33)) is ProofReason.OVERSIZE
    assert _reason(Opening.from_wire, dict(wire, path=[b"\x00" * 31])) is ProofReason.MALFORMED
    assert _reason(Opening.from_wire, dict(wire, index=-1)) is ProofReason.MALFORMED
    assert _reason(Opening.from_wire, dict(wire, index=True)) is ProofReason.MALFORMED
    assert _reason(Opening.from_wire, dict(wire, extra=1)) is ProofReason.MALFORMED
