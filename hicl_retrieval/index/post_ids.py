"""A segment's post ids as sorted 64-bit hashes, so that an add's check of its new post ids does not grow with the index.

DuckDB has no fast path for a list of post ids: the check scans the column (1,024 ids: 7 ms at
154,000 posts, 151 ms at 10,000,000; an ART index on the column is flat but 39 ms even when
small; scripts/bench_lookups.py). Each sealed segment keeps ``seg-X.postids.npy``, the BLAKE2b
hashes (8 bytes) of its posts' post ids, sorted, and ``seg-X.postids.buckets.npy``, where each
bucket of them begins (hashes are uniform, so the top bits of a hash name its bucket, of 8-16
hashes on average): a search in its bucket tells which of the new post ids may be known, and only
those are confirmed in the post store (a deleted post's id may be added again, and a hash may
collide). A binary search of the whole array missed the CPU's cache more as it grew: 1,024 ids
0.06 ms at 200,000 hashes, 0.30-0.41 ms at 10,000,000; in their buckets 0.09 and 0.10 ms.
Segments sealed before there were buckets are searched whole.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ..core.errors import IndexDamaged

BUCKET_SIZE = 8
"""Hashes a bucket holds at least on average: the directory is at most 1 byte a post."""


def post_id_hashes(post_ids: Iterable[str]) -> np.ndarray:
    """The 64-bit BLAKE2b hash of each post id, as signed integers (little-endian digests)."""
    blake2b = hashlib.blake2b
    digests = b"".join([blake2b(post_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
                        for post_id in post_ids])
    return np.frombuffer(digests, dtype="<i8").astype(np.int64)


def sorted_hashes(post_ids: Iterable[str]) -> np.ndarray:
    """The hashes of `post_ids`, sorted: what ``seg-X.postids.npy`` holds."""
    return np.sort(post_id_hashes(post_ids))


def bucket_starts(hashes: np.ndarray) -> np.ndarray:
    """Where each bucket of the sorted `hashes` begins, and their count last: what ``seg-X.postids.buckets.npy``
    holds. Of 2**bits buckets, bucket j holds the hashes whose top `bits` bits, as a signed number, are
    j - 2**(bits - 1): the order of the hashes."""
    bits = max(1, int(np.log2(max(len(hashes), 1) / BUCKET_SIZE)))
    bounds = (np.arange(2**bits, dtype=np.int64) - 2 ** (bits - 1)) << (64 - bits)
    return np.append(np.searchsorted(hashes, bounds), len(hashes)).astype(np.int64)


def held_in_buckets(part: np.ndarray, starts: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """Which of `hashes` `part` holds: a binary search within each one's bucket, all at once."""
    bits = int(np.log2(len(starts) - 1))
    bucket = (hashes >> (64 - bits)) + 2 ** (bits - 1)
    low, high = starts[bucket], starts[bucket + 1]
    last = len(part) - 1
    while (open_ := low < high).any():
        middle = (low + high) >> 1
        right = part[np.minimum(middle, last)] < hashes
        low = np.where(open_ & right, middle + 1, low)
        high = np.where(open_ & ~right, middle, high)
    return part[np.minimum(low, last)] == hashes


def held_sorted(part: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """Which of the sorted `hashes` `part` holds: a binary search of the whole part."""
    return part[np.minimum(np.searchsorted(part, hashes), len(part) - 1)] == hashes


class PostIdHashes:
    """The post-id hashes of several segments: which post ids an index may hold."""

    def __init__(self, paths: Sequence[tuple[Path, Path | None]]) -> None:
        """`paths`: each segment's hashes file and its buckets file (None where it was sealed without)."""
        self.parts = []
        for hashes, buckets in paths:
            try:
                part = np.asarray(np.load(hashes, mmap_mode="r", allow_pickle=False))
                starts = None if buckets is None else np.asarray(np.load(buckets, mmap_mode="r", allow_pickle=False))
            except ValueError:
                part = starts = None
            buckets_fit = starts is None or (len(starts) >= 3 and not (len(starts) - 1) & (len(starts) - 2)
                                             and starts.dtype == np.int64 and starts[-1] == len(part))
            if part is None or part.dtype != np.int64 or not buckets_fit:
                raise IndexDamaged(f"the post-id hashes of {hashes.parent} cannot be read ({hashes.name}, "
                                   f"{buckets.name if buckets else 'no buckets'}): a file is damaged; "
                                   f"run `hicl-retrieval verify {hashes.parent}`")
            if len(part):
                self.parts.append((part, starts))

    def maybe_held(self, post_ids: Sequence[str]) -> list[str]:
        """Those of `post_ids` whose hash a segment holds: all the index holds, and rarely one it does not."""
        if not post_ids or not self.parts:
            return []
        hashes = post_id_hashes(post_ids)
        order = np.argsort(hashes)
        hashes = hashes[order]  # searched in order: each search starts where the last one ended, in memory nearby
        held = np.zeros(len(hashes), dtype=bool)
        for part, starts in self.parts:
            held |= held_sorted(part, hashes) if starts is None else held_in_buckets(part, starts, hashes)
        return [post_ids[i] for i in np.sort(order[held]).tolist()]
