"""An index's segments read as one: vectors looked up by id, and FAISS parts searched as one index.

Segments hold disjoint, ascending id ranges (a build's, then each add's), so an id's segment is
found by bisection and its row by a search of the segment's ids. IVF parts share the index's
one trained coarse quantizer, so their inverted lists are stacked under it
(`HStackInvertedLists`) and a query visits the same lists as in one index. Fast-scan lists, packed
in blocks of 32 codes that no stack can join, keep a copy of that quantizer in each part; when read,
their codes are moved into the first part's lists (`merge_from`: a copy of the codes, 0.2 s for
154,000 posts), since a search of one list per probe costs a fourth of one per part and probe
(nine parts of 155,162 TweetEval posts: 0.35 against 1.28-1.41 ms a query). Other types are searched shard by
shard (`IndexShards`), their hits merged by score.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..core import native
from .faiss_index import VectorIndex


def is_contiguous(ids: np.ndarray) -> bool:
    """Whether the ascending `ids` are every id from the first to the last: then an id's row is id - first."""
    return bool(len(ids)) and bool(ids[-1] - ids[0] + 1 == len(ids))


def row_numbers(segment_ids: np.ndarray, contiguous: bool, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows of the `wanted` ids (none below the segment's first) in a segment, each within the segment,
    and which of them the segment holds. A contiguous segment's rows are subtractions: a search of a large
    segment's ids misses the CPU's caches and faults in their pages (0.1-0.2 ms for 40 ids at 10M posts)."""
    last = len(segment_ids) - 1
    if contiguous:
        rows = wanted - segment_ids[0]
        return np.minimum(rows, last), rows <= last
    rows = np.minimum(np.searchsorted(segment_ids, wanted), last)
    return rows, segment_ids[rows] == wanted


class SegmentVectors:
    """The float16 vectors of several segments, indexed by post id like one array: ``vectors[ids]``."""

    def __init__(self, parts: Sequence[tuple[np.ndarray, np.ndarray]], dim: int) -> None:
        """`parts`: (ids ascending, float16 vectors of shape (len(ids), dim)) of each segment, in id order."""
        # plain views of the memory maps: indexing a np.memmap costs more than reading a row
        self.parts = [(np.asarray(ids), np.asarray(vectors)) for ids, vectors in parts if len(ids)]
        self.dim = dim
        self.starts = np.array([ids[0] for ids, _ in self.parts], dtype=np.int64)
        self.contiguous = [is_contiguous(ids) for ids, _ in self.parts]

    @property
    def shape(self) -> tuple[int, int]:
        return sum(len(ids) for ids, _ in self.parts), self.dim

    def __getitem__(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        out = np.empty((len(ids), self.dim), dtype=np.float16)
        which = np.maximum(np.searchsorted(self.starts, ids, side="right") - 1, 0)  # below the first: its first row
        for number in np.unique(which):
            mask = which == number
            segment_ids, vectors = self.parts[number]
            rows, _ = row_numbers(segment_ids, self.contiguous[number], np.maximum(ids[mask], segment_ids[0]))
            out[mask] = vectors[rows]
        return out


def merged(parts: Sequence[VectorIndex]) -> VectorIndex:
    """Fast-scan parts (each with its own copy of the quantizer) as one index: the first, holding every part's
    codes, the others emptied. FAISS raises a RuntimeError for parts that do not fit together."""
    into = parts[0]._ivf()
    for part in parts[1:]:
        into.merge_from(part._ivf(), 0)
    parts[0].index.ntotal = into.ntotal  # the wrapper's count, under an OPQ rotation say
    return parts[0]


def combined(parts: Sequence[VectorIndex], trained: VectorIndex) -> VectorIndex:
    """The FAISS parts of several segments (or of one IVF segment) as one index.

    `trained` is the index's trained, empty index; for IVF it receives the stacked lists. Flat and graph parts
    (and an index of no parts) are searched as shards; fast-scan parts are `merged` instead.
    """
    faiss = native.faiss()
    ivf = trained._ivf()
    if ivf is not None and not isinstance(ivf, faiss.IndexIVFFastScan):
        lists = faiss.InvertedListsPtrVector()
        for part in parts:
            lists.push_back(part._ivf().invlists)
        stacked = faiss.HStackInvertedLists(lists.size(), lists.data())
        ivf.replace_invlists(stacked, False)
        total = sum(part.size for part in parts)
        ivf.ntotal = trained.index.ntotal = total
        trained.keep = (parts, lists, stacked)  # the parts own the lists the stack reads
        return trained
    shards = faiss.IndexShards(trained.dim, False, False)
    for part in parts:
        shards.add_shard(part.index)
    index = VectorIndex(shards)
    index.keep = parts
    return index
