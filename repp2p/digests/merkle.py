"""A Merkle tree over sorted leaves: RFC 6962 hashing, inclusion and non-inclusion proofs.

Hashing is RFC 6962's (section 2.1), SHA-256 with domain separation so a leaf can never pass
for an inner node::

    leaf hash  = H(0x00 || data)
    inner node = H(0x01 || left || right)
    MTH([])    = H("")                        # the empty tree
    MTH(D[n])  = H(0x01 || MTH(D[:k]) || MTH(D[k:]))   # k: largest power of 2 below n

Leaves are kept in strictly increasing order of a key the caller derives from each leaf's
data, which is what makes *non-inclusion* provable: a key is absent from a range of leaves
when the two adjacent leaves around it (or the first or last leaf of the range) are included
and their keys bracket it (:class:`Bracket`). A bracket is sound only against a publisher
whose leaves are sorted; an unsorted tree is itself provable (two adjacent leaves out of
order), so nobody can build a false non-inclusion proof against an honest publisher.

Proof objects are frozen dataclasses with a canonical CBOR form (:meth:`Opening.to_wire`)
and strict readers; verification raises :class:`~repp2p.errors.ProofError` with a
:class:`~repp2p.errors.ProofReason`, nothing else, whatever the input.

Pure: no I/O, no clock, no randomness.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from collections.abc import Callable, Sequence
from typing import Any

from repp2p.errors import ProofError, ProofReason

#: Root of the tree without leaves.
EMPTY_ROOT = hashlib.sha256(b"").digest()
HASH_SIZE = 32
#: Most leaves a tree may hold; proofs of larger trees are refused (paths of <= 32 hashes).
MAX_TREE_SIZE = 2**32
#: Largest leaf encoding a proof may carry (every leaf of repp2p is far below it).
MAX_LEAF_SIZE = 1024

KeyOf = Callable[[bytes], bytes]


def leaf_hash(data: bytes) -> bytes:
    """``H(0x00 || data)``."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``H(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _levels(hashes: Sequence[bytes]) -> list[list[bytes]]:
    # Bottom-up, pairing left to right and carrying an unpaired last node up unchanged:
    # the same tree as RFC 6962's recursive split at the largest power of two below n.
    levels = [list(hashes)]
    while len(levels[-1]) > 1:
        below = levels[-1]
        up = [node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)]
        if len(below) % 2:
            up.append(below[-1])
        levels.append(up)
    return levels


def root_of(leaves: Sequence[bytes]) -> bytes:
    """The Merkle tree hash of the leaves' data (``EMPTY_ROOT`` for none)."""
    if not leaves:
        return EMPTY_ROOT
    return _levels([leaf_hash(d) for d in leaves])[-1][0]


@dataclasses.dataclass(frozen=True)
class Opening:
    """One leaf of a tree with its inclusion path (RFC 6962 audit path, leaf to root).

    Attributes:
        index: the leaf's position, from 0.
        leaf: the leaf's data (what is hashed as ``H(0x00 || leaf)``).
        path: sibling hashes from the leaf up to the root.
    """

    index: int
    leaf: bytes
    path: tuple[bytes, ...]

    def to_wire(self) -> dict[str, Any]:
        """The CBOR-ready map ``{"index": uint, "leaf": bytes, "path": [bytes(32)...]}``."""
        return {"index": self.index, "leaf": self.leaf, "path": list(self.path)}

    @classmethod
    def from_wire(cls, obj: Any) -> Opening:
        """Read :meth:`to_wire`'s map, checking kinds and sizes.

        Raises:
            ProofError: MALFORMED (wrong shape or kinds) or OVERSIZE (leaf or path too long).
        """
        if type(obj) is not dict or obj.keys() != {"index", "leaf", "path"}:
            raise ProofError(ProofReason.MALFORMED, "an opening is {index, leaf, path}")
        index, leaf, path = obj["index"], obj["leaf"], obj["path"]
        if type(index) is not int or not 0 <= index < MAX_TREE_SIZE:
            raise ProofError(ProofReason.MALFORMED, "opening index must be a uint32")
        if type(leaf) is not bytes:
            raise ProofError(ProofReason.MALFORMED, "opening leaf must be bytes")
        if len(leaf) > MAX_LEAF_SIZE:
            raise ProofError(ProofReason.OVERSIZE, f"leaf of {len(leaf)} bytes")
        if type(path) is not list:
            raise ProofError(ProofReason.MALFORMED, "opening path must be an array")
        if len(path) > 32:
            raise ProofError(ProofReason.OVERSIZE, f"path of {len(path)} hashes")
        if any(type(h) is not bytes or len(h) != HASH_SIZE for h in path):
            raise ProofError(ProofReason.MALFORMED, "path entries are 32-byte hashes")
        return cls(index, leaf, tuple(path))


def verify_inclusion(opening: Opening, size: int, root: bytes) -> None:
    """Check that ``opening.leaf`` is leaf ``opening.index`` of the tree ``(size, root)``.

    RFC 9162 section 2.1.3.2: the path must have exactly the length the position needs.

    Raises:
        ProofError: BAD_INDEX (index outside the tree), BAD_PATH (wrong path length) or
            ROOT_MISMATCH (the path does not lead to ``root``).
    """
    if not 0 <= opening.index < size:
        raise ProofError(ProofReason.BAD_INDEX, f"leaf {opening.index} of a tree of {size}")
    fn, sn = opening.index, size - 1
    r = leaf_hash(opening.leaf)
    for p in opening.path:
        if sn == 0:
            raise ProofError(ProofReason.BAD_PATH, "path longer than the tree is deep")
        if fn % 2 == 1 or fn == sn:
            r = node_hash(p, r)
            while fn % 2 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(ProofReason.BAD_PATH, "path shorter than the tree is deep")
    if r != root:
        raise ProofError(ProofReason.ROOT_MISMATCH, f"leaf {opening.index} is not under the root")


@dataclasses.dataclass(frozen=True)
class Bracket:
    """Proof that a key is absent from the leaves ``[lo, hi)`` of a sorted tree.

    * ``lo == hi`` (an empty range): no openings;
    * the key is below the range's first key: ``left`` is None, ``right`` opens leaf ``lo``;
    * above its last key: ``left`` opens leaf ``hi - 1``, ``right`` is None;
    * between two keys: ``left`` and ``right`` open adjacent leaves ``i`` and ``i + 1``.
    """

    left: Opening | None
    right: Opening | None

    def to_wire(self) -> dict[str, Any]:
        """``{"left": opening | null, "right": opening | null}``."""
        return {
            "left": None if self.left is None else self.left.to_wire(),
            "right": None if self.right is None else self.right.to_wire(),
        }

    @classmethod
    def from_wire(cls, obj: Any) -> Bracket:
        """Read :meth:`to_wire`'s map.

        Raises:
            ProofError: MALFORMED or OVERSIZE.
        """
        if type(obj) is not dict or obj.keys() != {"left", "right"}:
            raise ProofError(ProofReason.MALFORMED, "a bracket is {left, right}")
        left, right = obj["left"], obj["right"]
        return cls(
            None if left is None else Opening.from_wire(left),
            None if right is None else Opening.from_wire(right),
        )


def _key(key_of: KeyOf, leaf: bytes) -> bytes:
    key = key_of(leaf)  # raises ProofError(BAD_LEAF) on a leaf it cannot read
    if type(key) is not bytes:
        raise ProofError(ProofReason.BAD_LEAF, "leaf key is not bytes")
    return key


def verify_absence(
    key: bytes,
    bracket: Bracket,
    *,
    lo: int,
    hi: int,
    size: int,
    root: bytes,
    key_of: KeyOf,
) -> None:
    """Check that no leaf in ``[lo, hi)`` of the sorted tree ``(size, root)`` has ``key``.

    Args:
        key: the key shown absent.
        bracket: the openings around it (see :class:`Bracket`).
        lo, hi: the range the key would have to be in (``0 <= lo <= hi <= size``).
        size, root: the tree.
        key_of: the key of a leaf's data; raises ``ProofError(BAD_LEAF)`` on bad data.

    Raises:
        ProofError: BAD_INDEX (a range outside the tree), NOT_ADJACENT (openings not where
            the bracket's shape puts them), NOT_BRACKETED (their keys do not enclose
            ``key``, or one equals it), BAD_LEAF, BAD_PATH or ROOT_MISMATCH.
    """
    if not 0 <= lo <= hi <= size:
        raise ProofError(ProofReason.BAD_INDEX, f"range [{lo}, {hi}) of a tree of {size}")
    left, right = bracket.left, bracket.right
    if lo == hi:
        if left is not None or right is not None:
            raise ProofError(ProofReason.NOT_ADJACENT, "an empty range needs no openings")
        return
    if left is None and right is None:
        raise ProofError(ProofReason.NOT_ADJACENT, "a non-empty range needs an opening")
    if left is None:
        assert right is not None
        if right.index != lo:
            raise ProofError(ProofReason.NOT_ADJACENT, "a lone right opening is the first leaf")
    elif right is None:
        if left.index != hi - 1:
            raise ProofError(ProofReason.NOT_ADJACENT, "a lone left opening is the last leaf")
    elif not (lo <= left.index and right.index == left.index + 1 and right.index < hi):
        raise ProofError(ProofReason.NOT_ADJACENT, "openings must be adjacent, in the range")
    for opening in (left, right):
        if opening is not None:
            verify_inclusion(opening, size, root)
    if left is not None and not _key(key_of, left.leaf) < key:
        raise ProofError(ProofReason.NOT_BRACKETED, "the left leaf's key is not below the key")
    if right is not None and not key < _key(key_of, right.leaf):
        raise ProofError(ProofReason.NOT_BRACKETED, "the right leaf's key is not above the key")


class MerkleTree:
    """A tree over leaves sorted strictly by key; builds inclusion and absence proofs.

    Args:
        leaves: leaf data, in order.
        key_of: the key of a leaf's data; keys must strictly increase.

    Raises:
        ValueError: the keys do not strictly increase, or there are too many leaves.
    """

    def __init__(self, leaves: Sequence[bytes], key_of: KeyOf) -> None:
        if len(leaves) > MAX_TREE_SIZE:
            raise ValueError(f"{len(leaves)} leaves, more than {MAX_TREE_SIZE}")
        self.leaves = tuple(leaves)
        self.keys = tuple(key_of(d) for d in self.leaves)
        if any(a >= b for a, b in itertools.pairwise(self.keys)):
            raise ValueError("leaf keys must strictly increase")
        self._levels = _levels([leaf_hash(d) for d in self.leaves]) if self.leaves else [[]]

    @property
    def size(self) -> int:
        """Number of leaves."""
        return len(self.leaves)

    @property
    def root(self) -> bytes:
        """The tree's root (``EMPTY_ROOT`` for no leaves)."""
        return self._levels[-1][0] if self.leaves else EMPTY_ROOT

    def opening(self, index: int) -> Opening:
        """Leaf ``index`` with its inclusion path.

        Raises:
            IndexError: no such leaf.
        """
        if not 0 <= index < self.size:
            raise IndexError(f"leaf {index} of {self.size}")
        path = []
        i = index
        for level in self._levels[:-1]:
            sibling = i ^ 1
            if sibling < len(level):
                path.append(level[sibling])
            i >>= 1
        return Opening(index, self.leaves[index], tuple(path))

    def find(self, key: bytes, lo: int = 0, hi: int | None = None) -> int:
        """The insertion point of ``key`` in ``[lo, hi)``: the first index whose key is
        ``>= key`` (``hi`` when none is)."""
        hi = self.size if hi is None else hi
        while lo < hi:
            mid = (lo + hi) // 2
            if self.keys[mid] < key:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def bracket(self, key: bytes, lo: int = 0, hi: int | None = None) -> Bracket:
        """Proof that ``key`` is absent from leaves ``[lo, hi)``.

        Raises:
            KeyError: the key is present there.
        """
        hi = self.size if hi is None else hi
        if lo == hi:
            return Bracket(None, None)
        at = self.find(key, lo, hi)
        if at < hi and self.keys[at] == key:
            raise KeyError("the key is present")
        left = self.opening(at - 1) if at > lo else None
        right = self.opening(at) if at < hi else None
        return Bracket(left, right)
