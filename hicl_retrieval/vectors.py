"""The FAISS index: unit vectors searched by inner product (so scores are cosines), keyed by id."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from . import native
from .errors import HiclError


def effective_factory(factory: str) -> str:
    """The factory string actually built: indexes without ids of their own get an ``IDMap2``."""
    factory = factory.strip()
    if factory.startswith("IDMap") or "IVF" in factory.split(",")[0]:
        return factory
    return f"IDMap2,{factory}"


class VectorIndex:
    """A FAISS index whose ids are the posts' ids (the DuckDB keys), never insertion order."""

    def __init__(self, index) -> None:
        self.index = index

    @classmethod
    def create(cls, dim: int, factory: str = "Flat") -> VectorIndex:
        faiss = native.faiss()
        try:
            index = faiss.index_factory(dim, effective_factory(factory), faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            raise HiclError(f"FAISS cannot build the index {factory!r}: {str(exc).strip().splitlines()[-1]}") from None
        return cls(index)

    @classmethod
    def load(cls, path: Path) -> VectorIndex:
        return cls(native.faiss().read_index(str(path)))

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
        self.index.train(np.ascontiguousarray(vectors, dtype=np.float32))

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        self.index.add_with_ids(
            np.ascontiguousarray(vectors, dtype=np.float32), np.ascontiguousarray(ids, dtype=np.int64)
        )

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each of shape (len(queries), k); id -1 where fewer than k exist."""
        return self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)

    def save(self, path: Path) -> None:
        """Write to `path` atomically: a reader sees the old file or the new one, never half."""
        tmp = path.with_name(path.name + ".tmp")
        native.faiss().write_index(self.index, str(tmp))
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
