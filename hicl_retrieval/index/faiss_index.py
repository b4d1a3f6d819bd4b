"""The FAISS index: unit vectors searched by inner product (so scores are cosines), keyed by id."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..core import native
from ..core.atomic import replacing
from ..core.errors import HiclError, IndexDamaged
from .planning import TRAINING_ADVICE, as_given, check_trainable, train_rows

LOG = logging.getLogger(__name__)


def effective_factory(factory: str) -> str:
    """The factory string actually built: indexes without ids of their own get an ``IDMap2``."""
    factory = factory.strip()
    if factory.startswith("IDMap") or "IVF" in factory:
        return factory
    return f"IDMap2,{factory}"


_COMPRESSED_CODES = ("PQ", "SQ", "LSH", "RaBitQ")


def default_k_factor(factory: str) -> int:
    """Candidates per hit to re-rank exactly: 10 for indexes that keep compressed codes, else 1."""
    return 10 if any(code in factory for code in _COMPRESSED_CODES) else 1


class VectorIndex:
    """A FAISS index whose ids are the posts' ids (the DuckDB keys), never insertion order."""

    def __init__(self, index) -> None:
        self.index = index
        self.excluded: np.ndarray | None = None
        """Ids searches skip (deleted posts whose vectors are still in the files)."""
        self.keep: object = None
        """Objects the FAISS index reads from and Python must keep alive (the parts of a combined index)."""

    @classmethod
    def create(cls, dim: int, factory: str = "Flat") -> VectorIndex:
        faiss = native.faiss()
        try:
            index = faiss.index_factory(dim, effective_factory(factory), faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            raise HiclError(f"FAISS cannot build the index {factory!r}: {str(exc).strip().splitlines()[-1]}") from None
        inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index
        if isinstance(inner, faiss.IndexFastScan):
            # The ids of a PQ without inverted lists are an IDMap's, whose searches with a selector (deleted posts)
            # FAISS's fast-scan kernels do not support; with inverted lists (IVF) they do.
            raise HiclError(f"the index {as_given(factory)!r} keeps fast-scan codes (x4fs) without inverted lists, which this "
                            "version does not search; give them inverted lists (IVF<n>,PQ<m>x4fs) or drop fs")
        return cls(index)

    @classmethod
    def load(cls, path: Path, *, mmap: bool = False, search_params: dict | None = None) -> VectorIndex:
        """The index in `path`; with `mmap`, an IVF index's inverted lists stay on disk, paged in on use."""
        faiss = native.faiss()
        if not path.is_file():
            raise IndexDamaged(f"the FAISS index {path} is missing")
        try:
            index = cls(faiss.read_index(str(path), faiss.IO_FLAG_MMAP if mmap else 0))
            index.set_search_params(search_params or {})
        except (RuntimeError, MemoryError) as exc:
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise IndexDamaged(f"the FAISS index {path} is damaged and cannot be read ({reason}); "
                            f"run `hicl-retrieval verify {path.parent}`") from None
        return index

    def set_search_params(self, params: dict) -> None:
        """Set search-time parameters such as ``nprobe`` or ``efSearch`` (FAISS ParameterSpace names)."""
        space = native.faiss().ParameterSpace()
        for name, value in params.items():
            space.set_index_parameter(self.index, name, float(value))

    def tunable(self) -> tuple[str, list[int]] | None:
        """The search parameter that trades speed for recall, and its values from fast to thorough."""
        ivf = self._ivf()
        if ivf is not None:
            lists = int(ivf.nlist)  # doubling, and ending on every list (an advised IVF28 is no power of two)
            return "nprobe", sorted({*(2**i for i in range(lists.bit_length())), lists})
        if isinstance(self._inner(), native.faiss().IndexHNSW):
            return "efSearch", [16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024]
        return None

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @property
    def size(self) -> int:
        return int(self.index.ntotal)

    @property
    def is_trained(self) -> bool:
        return bool(self.index.is_trained)

    def train(self, vectors: np.ndarray) -> None:
        faiss = native.faiss()
        ivf = self._ivf()
        coded = ivf if ivf is not None else self._inner()
        pq = getattr(coded, "pq", None)
        if isinstance(pq, faiss.ProductQuantizer):
            # FAISS's k-means on short sub-vectors is slow on CPU (minutes for 96 sub-quantisers
            # on the default 65,536 points); 64 points a centroid train codes that are re-ranked anyway.
            pq.cp.max_points_per_centroid = 64
        if hasattr(coded, "do_polysemous_training"):  # IVF-PQ's, and a plain PQ's (on unless "np" is written)
            coded.do_polysemous_training = False  # minutes of annealing for a Hamming filter we never use
        self.index.train(np.ascontiguousarray(vectors, dtype=np.float32))

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        self.index.add_with_ids(
            np.ascontiguousarray(vectors, dtype=np.float32), np.ascontiguousarray(ids, dtype=np.int64)
        )

    def drop_quantizer(self) -> None:
        """Free an IVF index's coarse quantizer, leaving an empty one: for a segment's part, whose lists are searched
        under the index's one quantizer (see segments.py), so that a part's file holds only its lists."""
        ivf = self._ivf()
        if ivf is None:
            return
        old, empty = ivf.quantizer, native.faiss().IndexFlat(ivf.d, ivf.metric_type)
        ivf.quantizer = empty
        if ivf.own_fields:
            old.this.own(True)  # Python frees the trained quantizer's copy when `old` goes
        ivf.own_fields = False
        self.keep = empty

    def _inner(self):
        """The index that does the searching (inside its IDMap, if any; a shard's, for segments searched as shards)."""
        faiss = native.faiss()
        index = faiss.downcast_index(self.index.at(0)) if isinstance(self.index, faiss.IndexShards) else self.index
        return faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index

    @property
    def is_fast_scan(self) -> bool:
        """Whether its codes are fast-scan ones (``x4fs``), packed in blocks of 32 that no stack of inverted lists
        can join: each segment's part keeps its own coarse quantizer, and opening moves their codes into one
        (segments.py)."""
        return isinstance(self._ivf(), native.faiss().IndexIVFFastScan)

    def _ivf(self):
        """The inverted-file index inside this one (under an OPQ rotation, say; a shard's, for segments searched as
        shards), or None."""
        faiss = native.faiss()
        index = self.index.at(0) if isinstance(self.index, faiss.IndexShards) else self.index
        try:
            return faiss.downcast_index(faiss.extract_index_ivf(index))
        except RuntimeError:
            return None

    @property
    def is_exact(self) -> bool:
        """Whether search compares the query with every vector (a flat index)."""
        faiss = native.faiss()
        return type(self._inner()) in (faiss.IndexFlat, faiss.IndexFlatIP, faiss.IndexFlatL2)

    def search(
        self, queries: np.ndarray, k: int, *, subset: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each of shape (len(queries), k); id -1 where fewer than k exist.

        `subset` (sorted ids) restricts the search to those posts through a FAISS IDSelector;
        without one, the `excluded` ids are skipped the same way.
        """
        faiss = native.faiss()
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if subset is not None:
            selector = faiss.IDSelectorBatch(np.ascontiguousarray(subset, dtype=np.int64))
        elif self.excluded is not None and len(self.excluded):
            batch = faiss.IDSelectorBatch(np.ascontiguousarray(self.excluded, dtype=np.int64))
            selector = faiss.IDSelectorNot(batch)
            selector.batch_ref = batch
        else:
            return self.index.search(queries, k)
        return self.index.search(queries, k, params=self._parameters(selector))

    def _parameters(self, selector):
        """Search parameters of the index's own kind (keeping its efSearch / nprobe) with `selector`."""
        faiss = native.faiss()
        inner, ivf = self._inner(), self._ivf()
        if isinstance(inner, faiss.IndexHNSW):
            params = faiss.SearchParametersHNSW(sel=selector)
            params.efSearch = inner.hnsw.efSearch
        elif ivf is not None:
            params = faiss.SearchParametersIVF(sel=selector)
            params.nprobe = ivf.nprobe
        else:
            params = faiss.SearchParameters(sel=selector)
        params.selector_ref = selector  # keep the selector alive as long as the parameters
        return params

    def save(self, path: Path) -> None:
        """Write to `path` atomically: a reader sees the old file or the new one, never half."""
        with replacing(path) as tmp:
            native.faiss().write_index(self.index, str(tmp))


RERANK_QUERIES = 32
"""Queries re-ranked together, so that a block's candidates stay in the CPU's cache: 1,000 queries of a
1M-vector index, 100 candidates of 768 each, took 124-129 ms in blocks of 32, 127-131 in 16, 131 in 8, 139-140
in 64 (min of 6, the search included)."""

SERIAL_VALUES = 1 << 15
"""torch's grain size: a conversion of no more values runs on the calling thread."""

PARALLEL_VALUES = 1 << 21
"""Values to convert (about 0.45 ms on one core), or scores to compute, from which the work runs on every core."""


def as_float32(rows: np.ndarray, *, parallel: bool | None = None) -> np.ndarray:
    """float16 `rows` as float32, converted by torch (with SIMD; numpy's ``astype`` converts one value at a time:
    2.4 ms for 3,200 x 768 values against 0.75 ms on one core and 0.30 on two).

    Unless `parallel` says otherwise, fewer than `PARALLEL_VALUES` values are converted on the calling thread,
    `SERIAL_VALUES` at a time: torch's OpenMP threads, once woken, spin for milliseconds and slow what runs
    next (one post at a time on the TweetEval index: the encoder's p50 5.3 ms, 6.5-7.5 ms after re-ranks
    converted on two cores)."""
    import torch

    source = torch.from_numpy(np.ascontiguousarray(rows)).view(-1)
    if parallel or (parallel is None and len(source) >= PARALLEL_VALUES):
        return source.float().numpy().reshape(rows.shape)
    out = torch.empty(len(source), dtype=torch.float32)
    for start in range(0, len(source), SERIAL_VALUES):
        out[start : start + SERIAL_VALUES] = source[start : start + SERIAL_VALUES]
    return out.numpy().reshape(rows.shape)


def reranked(search, stored: np.ndarray, k_factor: int, total: int):
    """`search` with `k_factor` times more candidates, re-scored exactly from `stored` (float16 rows by id).

    Compressed codes (PQ, SQ) rank neighbours approximately; the full vectors on disk put the
    best `k` of the candidates back in exact order. `total` bounds the candidates asked for.
    """
    if k_factor == 1:
        return search

    def rerank(queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        _, ids = search(queries, min(total, k * k_factor))
        k = min(k, ids.shape[1])
        scores, best = np.empty((len(ids), k), dtype=np.float32), np.empty((len(ids), k), dtype=np.int64)
        for start in range(0, len(ids), RERANK_QUERIES):
            block = ids[start : start + RERANK_QUERIES]
            candidates = as_float32(stored[np.maximum(block, 0).ravel()]).reshape(*block.shape, -1)
            exact = np.einsum("qmd,qd->qm", candidates, queries[start : start + len(block)])
            exact[block < 0] = -np.inf
            top = np.argsort(-exact, axis=1, kind="stable")[:, :k]
            scores[start : start + len(block)] = np.take_along_axis(exact, top, axis=1)
            best[start : start + len(block)] = np.take_along_axis(block, top, axis=1)
        return scores, best

    return rerank


def best_columns(queries: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The `k` best inner products of each of `queries` with the float16 `rows`, and their columns, in no order.

    Millions of scores are computed and selected by torch, on every core (1,000 queries against 200,000 rows
    of 768: 1.65-1.73 s against 4.2-5.4 s with numpy, the same answers); fewer by numpy after a conversion
    on this thread, which wakes no torch threads that would spin beside numpy's (see `as_float32`)."""
    k = min(k, len(rows))
    if len(queries) * len(rows) >= PARALLEL_VALUES:
        import torch

        rows = torch.from_numpy(as_float32(rows, parallel=True))
        scores, columns = (torch.from_numpy(queries) @ rows.T).topk(k, dim=1, sorted=False)
        return scores.numpy(), columns.numpy()
    scores = queries @ as_float32(rows, parallel=False).T
    columns = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return np.take_along_axis(scores, columns, axis=1), columns


def exact_search(
    vectors: np.ndarray, subset: np.ndarray, queries: np.ndarray, k: int, *, rows: int = 65536
) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-k of `queries` among the rows `subset` of `vectors` (float16 on disk).

    Used where an approximate index would lose recall on a small subset, and for the truth a tuning
    measures recall against. Reads `rows` vectors at a time, so memory stays bounded. Same output
    shape as `VectorIndex.search`.
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    k = min(k, len(subset))
    best_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_ids = np.full((len(queries), k), -1, dtype=np.int64)
    for start in range(0, len(subset), rows):
        ids = np.asarray(subset[start : start + rows])
        scores, columns = best_columns(queries, vectors[ids], k)
        scores = np.concatenate([best_scores, scores], axis=1)
        candidates = np.concatenate([best_ids, ids[columns]], axis=1)
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # scores has at least k + 1 columns
        best_scores = np.take_along_axis(scores, top, axis=1)
        best_ids = np.take_along_axis(candidates, top, axis=1)
    order = np.argsort(-best_scores, axis=1, kind="stable")
    return np.take_along_axis(best_scores, order, axis=1), np.take_along_axis(best_ids, order, axis=1)


def trained_index(vectors: np.ndarray, ids: np.ndarray, factory: str, dim: int, *,
                  advice: str = TRAINING_ADVICE) -> VectorIndex:
    """An empty index of `factory`, trained (if the type needs it) on a sample of the rows `ids` of `vectors`.

    Every build, compact and reindex trains here, so too few posts for the type's k-means are
    refused here, in one line ending with `advice` (see `check_trainable`), not with FAISS's traceback.
    """
    index = VectorIndex.create(dim, factory)
    if not index.is_trained:
        check_trainable(factory, len(ids), advice=advice)
        rng = np.random.default_rng(0)
        sample = np.sort(rng.choice(ids, size=train_rows(factory, len(ids)), replace=False))
        LOG.info("training %s on %d vectors", factory, len(sample))
        try:
            index.train(vectors[sample].astype(np.float32))
        except RuntimeError as exc:  # a need `check_trainable` does not know (another quantizer's)
            raise HiclError(f"FAISS cannot train {factory} on {len(sample)} posts "
                            f"({str(exc).strip().splitlines()[-1]}); {advice.replace('{fitting}', 'Flat')}") from None
    return index


ADD_ROWS = 65536
"""Vectors converted to float32 and added to FAISS at a time, so memory stays bounded."""


def filled(trained: VectorIndex, vectors: np.ndarray, ids: np.ndarray) -> VectorIndex:
    """A copy of the `trained` index holding the rows `ids` of `vectors` (anything indexed by id)."""
    index = VectorIndex(native.faiss().clone_index(trained.index))
    for start in range(0, len(ids), ADD_ROWS):
        chunk = ids[start : start + ADD_ROWS]
        index.add(vectors[chunk].astype(np.float32), chunk)
    return index
