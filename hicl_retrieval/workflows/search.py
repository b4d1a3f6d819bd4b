"""Search an index: encode queries like the corpus was, find neighbours, drop copies, attach metadata."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..core import native
from ..core.bounds import COUNT, K_FACTOR, check
from ..core.config import DeviceConfig
from ..core.errors import HiclError, IndexDamaged
from ..core.text import check_unicode, is_blank, strip_hashtags
from ..encoding.devices import check_batch_limits, check_index_dtype
from ..encoding.encoder import Encoder
from ..index.directory import IndexDir
from ..index.faiss_index import exact_search, reranked
from ..index.filters import Filter
from ..index.hits import Hit, SearchResult, distinct_hits
from ..index.manifest import Manifest

# A filtered search on an approximate index scans the matching posts' float16 vectors exactly
# when there are at most this many: a graph or inverted-list index loses recall on small subsets.
EXACT_SUBSET_ROWS = 200_000
# Cosines of unit vectors lie in [-1, 1]; float16 storage and compressed codes stray a little.
COSINE_SLACK = 0.1


class Retriever:
    """Top-k topical neighbours of posts, from one index directory.

    Queries are encoded by the encoder recorded in the index's manifest, in the precision it
    records, so they are always encoded like the corpus; `running` says on which device and in
    what batches. Use as a context manager, or call `close`.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        encoder: Encoder | None = None,
        threads: int | None = None,
        k_factor: int | None = None,
        running: DeviceConfig | None = None,
    ) -> None:
        check("--k-factor", k_factor, K_FACTOR)
        self.running = running or DeviceConfig()
        self.directory = IndexDir(path)
        self.manifest: Manifest = self.directory.read_manifest()
        native.set_threads(threads)
        check_index_dtype(self.manifest.encoder.dtype, self.running.dtype, str(path))
        check_batch_limits(self.running.max_tokens_per_batch, self.running.batch_size, self.manifest.encoder.max_length)
        self.encoder = encoder or Encoder(self.manifest.encoder, device=self.running.device,
                                                 runtime=self.running.runtime)
        if self.encoder.dim != self.manifest.dim:
            raise HiclError(
                f"the encoder gives {self.encoder.dim}-dimensional vectors but {path} holds "
                f"{self.manifest.dim}-dimensional ones; query with the index's own encoder"
            )
        self._open_files()
        self.k_factor = self.manifest.k_factor if k_factor is None else k_factor

    def _open_files(self, attempts: int = 3) -> None:
        """Open the FAISS parts, post stores and vectors of the segments the manifest names.

        A change may switch the manifest to new files and remove the old ones between our reading
        the manifest and opening them: then read it again. Once open, the files stay readable
        however the index changes, so a retriever answers from the index it opened.
        """
        for attempt in range(attempts):
            try:
                deleted = self.directory.deleted_ids(self.manifest)
                self.vectors = self.directory.open_faiss(self.manifest, deleted=deleted)
                self.stored_vectors = self.directory.open_vectors(self.manifest)
                self.store = self.directory.open_store(self.manifest, deleted)
                self.rows = self.directory.open_rows(self.manifest, deleted) or self.store
                self.adapter = self.directory.open_adapter(self.manifest)
                return
            except (HiclError, RuntimeError, OSError):
                if attempt == attempts - 1:
                    raise
                self.manifest = self.directory.read_manifest()

    def __enter__(self) -> Retriever:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.store.close()

    def _searcher(self, filter: Filter | None, among: np.ndarray | None = None):
        """(search function, number of posts it can return) for an optional filter and set of ids.

        Filters become a parameterised DuckDB query for the matching ids, then a FAISS
        IDSelector on an exact index, or an exact scan of those posts' stored vectors when an
        approximate index would have to find them among many others.
        """
        if not filter and among is None:
            return self._reranked(self.vectors.search), len(self)
        subset = self.store.matching_ids(*filter.to_sql()) if filter else None
        if among is not None:
            among = np.unique(np.asarray(among, dtype=np.int64))
            subset = among if subset is None else np.intersect1d(subset, among)
        if self.vectors.is_exact or len(subset) > EXACT_SUBSET_ROWS:
            return self._reranked(lambda queries, k: self.vectors.search(queries, k, subset=subset)), len(subset)
        return (lambda queries, k: exact_search(self.stored_vectors, subset, queries, k)), len(subset)

    def _reranked(self, search):
        return reranked(search, self.stored_vectors, self.k_factor, len(self))

    def __len__(self) -> int:
        return self.vectors.size

    def _check_answer(self, scores: np.ndarray, ids: np.ndarray) -> None:
        """Refuse what no whole index can answer: ids no post has, scores that are no cosine."""
        found = ids >= 0
        problem = None
        if (ids < -1).any() or (ids >= self.manifest.next_id).any():
            problem = f"the id {int(ids[(ids < -1) | (ids >= self.manifest.next_id)][0])}, which no post has"
        elif not np.isfinite(scores[found]).all():
            problem = "a score that is not a number"
        elif self.manifest.encoder.normalize_vectors and (np.abs(scores[found]) > 1 + COSINE_SLACK).any():
            problem = f"a cosine of {float(np.abs(scores[found]).max()):.3g} between unit vectors"
        if problem:
            raise IndexDamaged(f"{self.directory.path} answered with {problem}: its files are damaged; "
                            f"run `hicl-retrieval verify {self.directory.path}`")

    def search(
        self,
        queries: str | Sequence[str],
        k: int = 10,
        *,
        dedupe: bool = True,
        strip_query_hashtags: bool = False,
        filter: Filter | None = None,
    ) -> list[SearchResult]:
        """The `k` best hits for each query, best first; one `SearchResult` per query.

        With `dedupe` (the default) a hit is dropped when it is a copy of the query or of a
        better hit: the same text once lower-cased and stripped of links, mentions and
        ``RT @user:``, a truncated retweet of it, the same text of 16+ characters with other
        hashtags, or a retweet the dump links to it. More
        candidates are fetched until `k` hits remain or the index has no more posts.
        `strip_query_hashtags` removes hashtags from the query text before it is encoded.
        `filter` keeps only posts meeting all its conditions; k hits come back whenever k
        matching posts exist.
        """
        if isinstance(queries, str):
            queries = [queries]
        check("k", k, COUNT)
        vectors = self.encode_queries(self.query_texts(queries, strip_query_hashtags))
        hits = self.search_vectors(vectors, k, queries=queries, dedupe=dedupe, filter=filter)
        return [SearchResult(query=q, hits=h) for q, h in zip(queries, hits)]

    def query_texts(self, queries: Sequence[str], strip_query_hashtags: bool = False) -> list[str]:
        """The texts to encode for `queries` (checked not empty), hashtags stripped if asked."""
        for number, query in enumerate(queries, 1):
            where = f" (query {number} of {len(queries)})" if len(queries) > 1 else ""
            if not isinstance(query, str):
                raise HiclError(f"a query is a text, not {type(query).__name__}{where}")
            check_unicode(query, f"the query{where}")
            if is_blank(query):
                shows = "is empty" if not query.strip() else "shows nothing (only invisible characters)"
                raise HiclError(f"the query {shows}{where}; give the text of a post, or leave it out")
        # A query of only hashtags keeps them: stripped, it would be an empty text near every post.
        rule = self.manifest.hashtag_rule
        return [(strip_hashtags(q, rule) or q) if strip_query_hashtags else q for q in queries]

    def encode_queries(self, texts: Sequence[str], *, adapted: bool = True, progress=None) -> np.ndarray:
        """Query vectors, encoded as the index's posts were, then mapped through its topic adapter if it has
        one (unless not `adapted`); `progress`: a tqdm bar advanced by the texts encoded."""
        vectors = self.encoder.encode(texts, batch_size=self.running.batch_size,
                                      max_tokens=self.running.max_tokens_per_batch, progress=progress)
        if adapted and self.adapter is not None:
            return self.adapter.apply(vectors, normalize=self.manifest.encoder.normalize_vectors)
        return vectors

    def search_vectors(
        self,
        vectors: np.ndarray,
        k: int,
        *,
        queries: Sequence[str] | None = None,
        dedupe: bool = True,
        filter: Filter | None = None,
        among: np.ndarray | None = None,
    ) -> list[list[Hit]]:
        """Hits for query vectors; `queries`, their texts, tell which hits are copies of them; `among`, live
        post ids, keeps only those (like a filter)."""
        search, total = self._searcher(filter, among)
        texts = list(queries) if queries is not None else [None] * len(vectors)
        results: list[list[Hit]] = [[] for _ in range(len(vectors))]
        pending = list(range(len(vectors)))
        fetch = min(total, 2 * k + 16 if dedupe else k)
        while pending and fetch > 0:
            scores, ids = search(vectors[pending], fetch)
            self._check_answer(scores, ids)
            rows = self.rows.fetch(np.unique(ids[ids >= 0]))
            still = []
            for row_of_query, query in enumerate(pending):
                candidates = ((score, rows.get(int(post))) for score, post in zip(scores[row_of_query], ids[row_of_query]))
                results[query] = distinct_hits(candidates, texts[query], k, dedupe=dedupe,
                                               hashtag_rule=self.manifest.hashtag_rule)
                if len(results[query]) < k and fetch < total:
                    still.append(query)
            pending = still
            fetch = min(total, fetch * 4)
        return results

