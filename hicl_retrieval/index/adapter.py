"""A topic adapter: a low-rank map applied to query vectors before they search an index.

`hicl-retrieval adapt` learns it from an index's own hashtags (workflows/adapt.py) and records
it in the manifest; from then on every reader maps its query vectors through it, so it is part
of how the index encodes, like the encoder and its dtype. It acts on the query side only: the
stored vectors and the FAISS index stay the plain encoder's, so adding, compacting and
reindexing need nothing from it, and removing it is a manifest switch.

The file is data, never code: a NumPy ``.npz`` of two float32 arrays read without pickle.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import HiclError

ARRAYS = ("down", "up")


@dataclass(frozen=True)
class TopicAdapter:
    """``v + (v @ down) @ up``, re-normalised when the index's vectors are unit vectors."""

    down: np.ndarray
    """(dim, rank) float32."""
    up: np.ndarray
    """(rank, dim) float32."""

    @property
    def rank(self) -> int:
        return self.down.shape[1]

    @property
    def dim(self) -> int:
        return self.down.shape[0]

    def apply(self, vectors: np.ndarray, *, normalize: bool) -> np.ndarray:
        vectors = np.asarray(vectors, dtype=np.float32)
        mapped = vectors + (vectors @ self.down) @ self.up
        if normalize:
            mapped /= np.maximum(np.linalg.norm(mapped, axis=1, keepdims=True), 1e-12)
        return mapped

    def save(self, path: Path) -> None:
        with open(path, "wb") as handle:
            np.savez(handle, down=self.down.astype(np.float32), up=self.up.astype(np.float32))
            handle.flush()
            os.fsync(handle.fileno())

    @classmethod
    def load(cls, path: Path, dim: int) -> TopicAdapter:
        """The adapter in `path`, for `dim`-dimensional vectors; a file that is not one raises `HiclError`."""
        try:
            with np.load(path, allow_pickle=False) as data:
                names = sorted(data.files)
                if names != sorted(ARRAYS):
                    raise ValueError(f"it holds the arrays {names}, not {list(ARRAYS)}")
                down, up = data["down"], data["up"]
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
            raise HiclError(f"{path} is not a topic adapter ({exc})") from None
        rank = down.shape[1] if down.ndim == 2 else -1
        if down.dtype != np.float32 or up.dtype != np.float32 or down.shape != (dim, rank) or up.shape != (rank, dim):
            raise HiclError(f"{path} is not a topic adapter for {dim}-dimensional vectors "
                            f"(it holds {down.dtype} {down.shape} and {up.dtype} {up.shape})")
        if not (np.isfinite(down).all() and np.isfinite(up).all()):
            raise HiclError(f"{path} is not a topic adapter (it holds values that are not numbers)")
        return cls(down=down, up=up)


def adapter_summary(record: dict[str, Any]) -> str:
    """A manifest's adapter record in one line."""
    if not record:
        return "none: queries use the plain encoder"
    before, after = record.get("before"), record.get("after")
    figures = ""
    if before is not None and after is not None:
        relative = f" ({(after - before) / before:+.1%})" if before else ""
        figures = (f", held-out hashtag hit@10 {before:.4f} -> {after:.4f}{relative} over "
                   f"{record.get('held_out')} posts never trained on")
        if "tagged_before" in record:
            figures += (f"; neighbours with an eligible hashtag {record['tagged_before']:.0%} -> "
                        f"{record['tagged_after']:.0%}, hit@10 among them {record['among_tagged_before']:.4f} -> "
                        f"{record['among_tagged_after']:.4f}")
    return f"rank {record['rank']} residual map of the query vectors{figures} ({record['file']})"
