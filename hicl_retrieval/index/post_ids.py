"""A segment's post ids as sorted 64-bit hashes, so that an add's check of its new post ids does not grow with the index.

DuckDB has no fast path for a list of post ids: the check scans the column (1,024 ids: 7 ms at
154,000 posts, 151 ms at 10,000,000; an ART index on the column is flat but 39 ms even when
small; scripts/bench_lookups.py). Each sealed segment keeps ``seg-X.postids.npy``, the BLAKE2b
hashes (8 bytes) of its posts' post ids, sorted: a binary search in each tells which of the new
post ids may be known, and only those are confirmed in the post store (a deleted post's id may be
added again, and a hash may collide).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np


def post_id_hashes(post_ids: Iterable[str]) -> np.ndarray:
    """The 64-bit BLAKE2b hash of each post id, as signed integers (little-endian digests)."""
    blake2b = hashlib.blake2b
    digests = b"".join([blake2b(post_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
                        for post_id in post_ids])
    return np.frombuffer(digests, dtype="<i8").astype(np.int64)


def sorted_hashes(post_ids: Iterable[str]) -> np.ndarray:
    """The hashes of `post_ids`, sorted: what ``seg-X.postids.npy`` holds."""
    return np.sort(post_id_hashes(post_ids))


class PostIdHashes:
    """The post-id hashes of several segments: which post ids an index may hold."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.parts = [np.asarray(part) for part in (np.load(path, mmap_mode="r", allow_pickle=False) for path in paths)
                      if len(part)]

    def maybe_held(self, post_ids: Sequence[str]) -> list[str]:
        """Those of `post_ids` whose hash a segment holds: all the index holds, and rarely one it does not."""
        if not post_ids or not self.parts:
            return []
        hashes = post_id_hashes(post_ids)
        order = np.argsort(hashes)
        hashes = hashes[order]  # searched in order: each search starts where the last one ended, in memory nearby
        held = np.zeros(len(hashes), dtype=bool)
        for part in self.parts:
            found = np.minimum(np.searchsorted(part, hashes), len(part) - 1)
            held |= part[found] == hashes
        return [post_ids[i] for i in np.sort(order[held]).tolist()]
