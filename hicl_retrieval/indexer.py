"""Build an index directory from corpus files: read, encode, store, index, commit."""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import native
from .config import BuildConfig
from .corpus import Corpus, Post, Record, Reject
from .encoder import Encoder
from .index import FAISS_INDEX, REJECTS, VECTORS, IndexDir, Manifest
from .text import duplicate_key, extract_hashtags
from .vectors import VectorIndex, effective_factory

LOG = logging.getLogger(__name__)
DUPLICATE_POST_ID = "duplicate_post_id"
_ADD_ROWS = 65536  # vectors converted to float32 and added to FAISS at a time
_TRAIN_ROWS = 262144  # at most this many vectors train an index that needs training


@dataclass
class BuildReport:
    """What a build did; every record read is indexed, rejected or a duplicate post id."""

    index: Path
    read: int = 0
    indexed: int = 0
    rejected: Counter = field(default_factory=Counter)
    duplicates: int = 0
    """Posts dropped because an earlier post has the same post id."""
    repeated_texts: int = 0
    """Indexed posts whose text repeats an earlier one (hidden from results by de-duplication)."""
    notes: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    load_seconds: float = 0.0
    """Part of `seconds` spent loading the encoder model."""
    encode_seconds: float = 0.0

    def as_dict(self) -> dict:
        return {
            "read": self.read,
            "indexed": self.indexed,
            "rejected": dict(sorted(self.rejected.items())),
            "duplicates": self.duplicates,
            "repeated_texts": self.repeated_texts,
            "notes": dict(sorted(self.notes.items())),
            "seconds": round(self.seconds, 3),
            "load_seconds": round(self.load_seconds, 3),
            "encode_seconds": round(self.encode_seconds, 3),
        }

    def summary(self) -> str:
        rejected = sum(self.rejected.values())
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.rejected.items())) or "none"
        rate = self.indexed / self.seconds if self.seconds else 0.0
        lines = [
            f"read {self.read}, indexed {self.indexed}, rejected {rejected} ({reasons}), "
            f"duplicate post ids {self.duplicates}",
            f"posts repeating an earlier text: {self.repeated_texts} (kept, hidden from results)",
            f"{self.seconds:.1f} s ({self.load_seconds:.1f} s loading the model), {rate:.0f} posts/s; "
            f"encoding {self.encode_seconds:.1f} s "
            f"({100 * self.encode_seconds / self.seconds if self.seconds else 0:.0f}% of the time)",
        ]
        if self.notes:
            lines.append("notes: " + ", ".join(f"{k} {v}" for k, v in sorted(self.notes.items())))
        if rejected or self.duplicates:
            lines.append(f"rejected rows, with file, line and reason: {self.index / REJECTS}")
        return "\n".join(lines)


def _chunks(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    iterator = iter(records)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _write_reject(handle, reject: Reject) -> None:
    handle.write(json.dumps(
        {"source": reject.source, "line": reject.line, "reason": reject.reason, "detail": reject.detail},
        ensure_ascii=False,
    ) + "\n")


def _rows(posts: Sequence[Post], first_id: int) -> dict[str, list]:
    return {
        "id": list(range(first_id, first_id + len(posts))),
        "post_id": [p.post_id for p in posts],
        "text": [p.text for p in posts],
        "hashtags": [extract_hashtags(p.text) for p in posts],
        "author": [p.author for p in posts],
        "created_at": [p.created_at for p in posts],
        "retweet_of": [p.retweet_of for p in posts],
        "dup_key": [duplicate_key(p.text) for p in posts],
        "source": [p.source for p in posts],
        "line": [p.line for p in posts],
    }


def build_index(
    corpus: Sequence[str | Path], out: str | Path, config: BuildConfig, *, encoder: Encoder | None = None
) -> BuildReport:
    """Index every good post of the `corpus` files into the directory `out`.

    Input files are checked (existence, format, columns) before anything is written. Posts
    are read, encoded and stored `config.chunk_size` at a time, so memory stays bounded;
    the FAISS index and, last, the manifest are written at the end.
    """
    started = time.perf_counter()
    posts_in = Corpus(corpus, config.reader)
    factory = effective_factory(config.faiss_factory)
    native.set_threads(config.threads)
    tick = time.perf_counter()
    encoder = encoder or Encoder(config.encoder)
    load_seconds = time.perf_counter() - tick
    VectorIndex.create(encoder.dim, factory)  # a bad factory string fails before any encoding
    directory = IndexDir.create(out, overwrite=config.overwrite)
    report = BuildReport(index=directory.path, load_seconds=load_seconds)
    store = directory.open_store(read_only=False)
    try:
        with (
            open(directory.file(REJECTS), "w", encoding="utf-8") as rejects,
            open(directory.file(VECTORS), "wb") as vectors_out,
            tqdm(desc="encoding", unit=" posts", disable=not config.progress) as bar,
        ):
            next_id = 0
            for chunk in _chunks(posts_in, config.chunk_size):
                posts = [r for r in chunk if isinstance(r, Post)]
                for record in chunk:
                    if isinstance(record, Reject):
                        report.rejected[record.reason] += 1
                        _write_reject(rejects, record)
                    else:
                        report.notes.update(record.notes)
                report.read += len(chunk)
                tick = time.perf_counter()
                vectors = encoder.encode([p.text for p in posts], batch_size=config.batch_size, progress=bar)
                report.encode_seconds += time.perf_counter() - tick
                vectors.astype(np.float16).tofile(vectors_out)
                store.insert(_rows(posts, next_id))
                next_id += len(posts)
            repeated = store.repeated_post_ids()
            for _, post_id, source, line in repeated:
                _write_reject(rejects, Reject(source, line, DUPLICATE_POST_ID, f"post id {post_id} appeared earlier"))
            store.delete([row[0] for row in repeated])
            report.duplicates = len(repeated)
        report.indexed = store.count()
        report.repeated_texts = store.repeated_texts()
        ids = store.ids()
        store.checkpoint()
    finally:
        store.close()

    manifest = Manifest(
        encoder=encoder.config,
        model_revision=encoder.revision,
        dim=encoder.dim,
        faiss_factory=factory,
        count=report.indexed,
        vector_rows=next_id,
    )
    vectors = directory.open_vectors(manifest)
    index = _faiss_index(vectors, ids, factory, encoder.dim)
    index.save(directory.file(FAISS_INDEX))
    report.seconds = time.perf_counter() - started
    directory.write_manifest(dataclasses.replace(manifest, stats=report.as_dict()))
    return report


def _faiss_index(vectors: np.ndarray, ids: np.ndarray, factory: str, dim: int) -> VectorIndex:
    """The FAISS index of the rows `ids` of `vectors`, trained first if the type needs it."""
    index = VectorIndex.create(dim, factory)
    if not index.is_trained:
        rng = np.random.default_rng(0)
        sample = np.sort(rng.choice(ids, size=min(len(ids), _TRAIN_ROWS), replace=False))
        LOG.info("training %s on %d vectors", factory, len(sample))
        index.train(vectors[sample].astype(np.float32))
    for start in range(0, len(ids), _ADD_ROWS):
        chunk = ids[start : start + _ADD_ROWS]
        index.add(vectors[chunk].astype(np.float32), chunk)
    return index
