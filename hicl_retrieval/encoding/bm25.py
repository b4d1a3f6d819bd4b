"""BM25 over post texts: the lexical baseline a topic encoder has to beat.

Built on `bm25s` (sparse-matrix BM25, Lucene's scoring, k1 1.5, b 0.75) with English stop
words and the Snowball English stemmer (PyStemmer). A post that shares no term with the query
scores 0 and is not returned: BM25 has nothing to say about it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from ..core.errors import HiclError


def _stemmer():
    try:
        import Stemmer
    except ImportError:
        raise HiclError("the BM25 baseline needs PyStemmer and bm25s: pip install 'hicl-retrieval[eval]'") from None
    return Stemmer.Stemmer("english")


class Bm25:
    """A BM25 index of `texts`; `ids` are what searches return for them (default: positions)."""

    def __init__(self, texts: Sequence[str], ids: Sequence[int] | None = None) -> None:
        stemmer = _stemmer()
        import bm25s

        logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs each index build at DEBUG
        self._bm25s = bm25s
        self.stemmer = stemmer
        self.ids = np.arange(len(texts)) if ids is None else np.asarray(ids)
        if len(self.ids) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(self.ids)} ids")
        self.index = bm25s.BM25()
        self.index.index(self._tokens(texts), show_progress=False)

    def _tokens(self, texts: Sequence[str]):
        return self._bm25s.tokenize(list(texts), stopwords="en", stemmer=self.stemmer, show_progress=False)

    def search(self, queries: Sequence[str], k: int) -> list[list[tuple[float, int]]]:
        """For each query, up to `k` (score, id) pairs, best first, every score above 0."""
        k = min(k, len(self.ids))
        positions, scores = self.index.retrieve(self._tokens(queries), k=k, show_progress=False)
        return [[(float(s), int(self.ids[p])) for p, s in zip(row_positions, row_scores) if s > 0]
                for row_positions, row_scores in zip(positions, scores)]
