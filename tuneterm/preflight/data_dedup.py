"""Exact and near-duplicate detection for dataset rows.

Exact duplicates: an 8-byte BLAKE2b digest of the normalised text (lower-case, whitespace
collapsed), so memory stays ~50 bytes a row at any size.

Near duplicates: MinHash over word 3-gram shingles of the first :data:`MAX_WORDS` words with locality-sensitive hashing (16 bands of 4
rows over 64 permutations: pairs with Jaccard similarity above ~0.5 become candidates), each
candidate verified with the signature estimate against the rule's threshold. Vectorised with numpy
over a bounded sample of rows (the rule's ``near_sample``), so 100k rows stay well within seconds.
Shingles are hashed with CRC32 (deterministic across processes, unlike ``hash()``).
"""

from __future__ import annotations

import hashlib
import zlib
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

NUM_PERM = 64
BANDS = 16
SHINGLE = 3
MIN_WORDS = 8  # shorter texts are left to exact matching: 3-gram Jaccard is meaningless on them
MAX_WORDS = 256  # words of each text that are shingled: bounds the cost of very long examples
_PRIME = np.uint64((1 << 31) - 1)
_rng = np.random.default_rng(20240611)  # fixed seed: the same data gives the same pairs every run
_A = _rng.integers(1, (1 << 31) - 1, size=NUM_PERM, dtype=np.uint64)
_B = _rng.integers(0, (1 << 31) - 1, size=NUM_PERM, dtype=np.uint64)


def exact_key(canonical: str) -> bytes:
    """Digest identifying a normalised text (see :func:`~tuneterm.preflight.data_formats.normalise`).

    >>> exact_key("a b") == exact_key("a b"), exact_key("a b") == exact_key("a c")
    (True, False)
    """
    return hashlib.blake2b(canonical.encode("utf-8", "replace"), digest_size=8).digest()


def _shingles(words: Sequence[str]) -> np.ndarray:
    # map() keeps the per-word work in C (encode + crc32): ~10x faster than a Python loop.
    ids = np.fromiter(map(zlib.crc32, map(str.encode, words)), dtype=np.uint64, count=len(words))
    if len(ids) < SHINGLE:
        return ids
    # Combine consecutive word hashes into one 32-bit shingle hash (wrapping uint64 arithmetic).
    out = ids[:-2] * np.uint64(1000003) + ids[1:-1] * np.uint64(8191) + ids[2:]
    return out & np.uint64(0xFFFFFFFF)


def minhash_signatures(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """MinHash signatures of the texts with at least :data:`MIN_WORDS` words.

    Returns:
        ``(positions, signatures)``: indices into ``texts`` that were signed, and a
        ``(len(positions), NUM_PERM)`` uint64 matrix.
    """
    positions: list[int] = []
    shingle_arrays: list[np.ndarray] = []
    for i, t in enumerate(texts):
        words = t.split(maxsplit=MAX_WORDS)[:MAX_WORDS]
        if len(words) < MIN_WORDS:
            continue
        positions.append(i)
        shingle_arrays.append(_shingles(words))  # repeats do not change a minimum
    if not positions:
        return np.empty(0, dtype=np.int64), np.empty((0, NUM_PERM), dtype=np.uint64)
    sigs = np.empty((len(positions), NUM_PERM), dtype=np.uint64)
    # Process rows in blocks so the (shingles x permutations) matrix stays around 25 MB.
    start = 0
    while start < len(shingle_arrays):
        stop, total = start, 0
        while stop < len(shingle_arrays) and (total == 0 or total + len(shingle_arrays[stop]) <= 50_000):
            total += len(shingle_arrays[stop])
            stop += 1
        block = shingle_arrays[start:stop]
        flat = np.concatenate(block)
        hashed = (flat[:, None] * _A[None, :] + _B[None, :]) % _PRIME
        offsets = np.cumsum([0] + [len(b) for b in block[:-1]])
        sigs[start:stop] = np.minimum.reduceat(hashed, offsets, axis=0)
        start = stop
    return np.asarray(positions, dtype=np.int64), sigs


def near_duplicate_pairs(signatures: np.ndarray, threshold: float) -> list[tuple[int, int, float]]:
    """Pairs ``(later, earlier, similarity)`` of signature rows whose estimated Jaccard >= threshold.

    Each later row is reported once, with its most similar earlier row. Rows with identical
    signatures (exact duplicates) are included; callers subtract exact matches they already counted.
    """
    n = len(signatures)
    if n < 2:
        return []
    r = NUM_PERM // BANDS
    candidates: dict[int, set[int]] = defaultdict(set)
    mults = np.array([1000003, 8191, 131071, 524287, 65537, 257, 17, 3][:r], dtype=np.uint64)
    for band in range(BANDS):
        # One 64-bit key per row and band (wrapping arithmetic), grouped by sorting: no Python loop
        # over rows. A rare key collision only adds a candidate, which verification rejects.
        keys = (signatures[:, band * r : (band + 1) * r] * mults).sum(axis=1)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        same = np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1]) + 1  # positions equal to the previous
        if not len(same):
            continue
        # Link each member to its bucket's predecessor (in row order) and to the bucket's first row:
        # enough for the verification below without quadratic blow-up on huge buckets.
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        first_of = starts[np.searchsorted(starts, np.arange(n), side="right") - 1]
        for pos in same.tolist():
            later, prev, first = int(order[pos]), int(order[pos - 1]), int(order[first_of[pos]])
            candidates[later].add(prev)
            candidates[later].add(first)
    pairs: list[tuple[int, int, float]] = []
    for later, earlier_set in candidates.items():
        best, best_sim = -1, -1.0
        for earlier in earlier_set:
            if earlier >= later:
                continue
            sim = float(np.mean(signatures[later] == signatures[earlier]))
            if sim > best_sim:
                best, best_sim = earlier, sim
        if best >= 0 and best_sim >= threshold:
            pairs.append((later, best, best_sim))
    pairs.sort()
    return pairs
