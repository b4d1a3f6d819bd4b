"""Change a finished index: add, delete, compact, reindex. Readers always see a whole index.

Each change writes new files (a copy of the post store, a new FAISS file, new vectors on
compaction) or appends past what the manifest covers, then switches the manifest atomically
and removes the files no manifest names any more. A reader that opened the index before keeps
its files (open files outlive their unlinking); one that opens it after sees the change whole.
A change that stops half-way leaves the index as it was; its leftovers are removed by the next.
One change runs at a time (a lock file); readers take no lock.
"""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import shutil
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..core.bounds import COUNT, K_FACTOR, MEMORY, RECALL, check
from ..core.config import ReaderConfig
from ..core.errors import HiclError
from ..corpus import Corpus, Post, Reject, normalize_post_id
from ..encoding.encoder import Encoder
from ..index.directory import _INDEX_FILE, MANIFEST, REJECTS, WRITE_LOCK, IndexDir, Manifest
from ..index.faiss_index import default_k_factor, effective_factory
from ..index.filters import Filter
from ..index.planning import check_fits, factory_for, plan_index
from .build import (
    advance,
    free_disk,
    nothing_indexed,
    post_rows,
    record_chunks,
    sync_file,
    truncate_file,
    write_faiss,
    write_reject,
)

LOG = logging.getLogger(__name__)
_COPY_ROWS = 65536


@contextmanager
def _writing(path: str | Path, *, except_faiss: bool = False) -> Iterator[tuple[IndexDir, Manifest]]:
    """The index and its manifest, with the write lock held and an earlier change's leftovers removed."""
    directory = IndexDir(path)
    directory.read_manifest(except_faiss=except_faiss)  # not an index: fail before creating a lock file in it
    with open(directory.file(WRITE_LOCK), "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise HiclError(
                f"another add, delete, compact or reindex is changing {directory.path}; retry when it ends"
            ) from None
        manifest = directory.read_manifest(except_faiss=except_faiss)
        _remove_unnamed(directory, manifest)
        yield directory, manifest


def _named(manifest: Manifest) -> set[str]:
    return {MANIFEST, REJECTS, WRITE_LOCK, manifest.store_file, manifest.faiss_file, manifest.vectors_file}


def _remove_unnamed(directory: IndexDir, manifest: Manifest) -> None:
    """Delete index files the manifest does not name: replaced generations, an interrupted change's output."""
    keep = _named(manifest)
    for file in directory.path.iterdir():
        if _INDEX_FILE.match(file.name) and file.name not in keep and file.name.split(".wal")[0] not in keep:
            file.unlink(missing_ok=True)


def _generation() -> int:
    return time.time_ns() // 1000


def _switch(directory: IndexDir, manifest: Manifest) -> Manifest:
    directory.commit(manifest)
    _remove_unnamed(directory, manifest)
    return directory.read_manifest()


def _copy_store(directory: IndexDir, manifest: Manifest, generation: int) -> str:
    name = f"posts.{generation}.duckdb"
    shutil.copyfile(directory.file(manifest.store_file), directory.file(name))
    return name


@dataclass
class AddReport:
    read: int = 0
    added: int = 0
    known: int = 0
    """Posts skipped because a post with the same post id is already in the index (or came earlier)."""
    rejected: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.rejected.items())) or "none"
        lines = [f"read {self.read}, added {self.added}, skipped (post id already indexed) {self.known}, "
                 f"rejected {sum(self.rejected.values())} ({reasons}); {self.seconds:.1f} s"]
        return "\n".join(lines + [f"warning: {warning}" for warning in self.warnings])


def add_posts(
    path: str | Path,
    corpus: Sequence[str | Path],
    *,
    reader: ReaderConfig | None = None,
    encoder: Encoder | None = None,
    batch_size: int = 64,
    chunk_size: int = 4096,
    progress: bool = True,
) -> AddReport:
    """Append the good posts of `corpus` to the index at `path`, encoding only them.

    Posts whose post id the index (or an earlier line of `corpus`) already holds are skipped,
    checked a chunk at a time against the post store. New vectors join the FAISS index as it
    is (an IVF index keeps its trained centroids; `reindex` re-trains it after large additions).
    """
    check("--batch-size", batch_size, COUNT)
    check("--chunk-size", chunk_size, COUNT)
    started = time.perf_counter()
    posts_in = Corpus(corpus, reader or ReaderConfig())
    report = AddReport(warnings=[posts_in.skipped_summary()] if posts_in.skipped else [])
    with _writing(path) as (directory, manifest):
        encoder = encoder or Encoder(manifest.encoder)
        if encoder.dim != manifest.dim:
            raise HiclError(f"the encoder gives {encoder.dim}-dimensional vectors, the index holds {manifest.dim}")
        directory.check_intact(manifest, manifest.faiss_file)  # it is read, grown and written again
        generation = _generation()
        store_file = _copy_store(directory, manifest, generation)
        vectors_path, rejects_path = directory.file(manifest.vectors_file), directory.file(REJECTS)
        truncate_file(vectors_path, manifest.vector_rows * manifest.dim * 2)  # an interrupted add's tail
        truncate_file(rejects_path, manifest.files.get(REJECTS, 0))
        next_id = manifest.vector_rows
        store = directory.open_store(read_only=False, name=store_file)
        try:
            with (
                open(vectors_path, "ab") as vectors_out,
                open(rejects_path, "ab") as rejects,
                tqdm(desc="adding", unit=" records", total=max(posts_in.estimated_records(), 1),
                     disable=not progress) as bar,
            ):
                for chunk in record_chunks(posts_in, chunk_size):
                    report.read += len(chunk)
                    for record in chunk:
                        if isinstance(record, Reject):
                            report.rejected[record.reason] += 1
                            write_reject(rejects, record)
                    posts = [r for r in chunk if isinstance(r, Post)]
                    known = store.existing_post_ids([p.post_id for p in posts if p.post_id is not None])
                    fresh = []
                    for post in posts:
                        if post.post_id is not None and post.post_id in known:
                            report.known += 1
                            continue
                        known.add(post.post_id)
                        fresh.append(post)
                    encoder.encode([p.text for p in fresh], batch_size=batch_size, progress=bar).astype(
                        np.float16).tofile(vectors_out)
                    advance(bar, len(chunk) - len(fresh))
                    if fresh:
                        store.insert(post_rows(fresh, next_id, manifest.hashtag_rule))
                    next_id += len(fresh)
                sync_file(vectors_out)
                sync_file(rejects)
            count = store.count()
            store.checkpoint()
        finally:
            store.close()
        report.added = next_id - manifest.vector_rows
        report.warnings += posts_in.time_warnings
        if report.added == 0 and report.known == 0:
            raise HiclError(nothing_indexed(report.read, report.rejected, rejects_path, manifest.files.get(REJECTS, 0),
                                            verb="added") + f"; {directory.path} is unchanged")
        grown = dataclasses.replace(manifest, vector_rows=next_id)
        index = directory.open_faiss(manifest, mmap=False)
        vectors = directory.open_vectors(grown)
        for start in range(manifest.vector_rows, next_id, _COPY_ROWS):
            ids = np.arange(start, min(start + _COPY_ROWS, next_id))
            index.add(vectors[ids].astype(np.float32), ids)
        faiss_file = f"faiss.{generation}.index"
        index.save(directory.file(faiss_file))
        report.seconds = time.perf_counter() - started
        _switch(directory, dataclasses.replace(
            grown, store_file=store_file, faiss_file=faiss_file, count=count,
            stats={**manifest.stats, "added": manifest.stats.get("added", 0) + report.added},
        ))
    return report


def delete_posts(path: str | Path, *, post_ids: Sequence[str] = (), filter: Filter | None = None) -> int:
    """Remove the posts with these post ids or meeting `filter` from results at once; returns how many.

    Their rows leave the post store now, so no search returns them; their vectors stay in the
    files until `compact`.
    """
    post_ids = [normalized for normalized in map(normalize_post_id, post_ids) if normalized]  # as readers store them
    if not post_ids and not filter:
        raise HiclError("say which posts to delete: post ids or a filter")
    with _writing(path) as (directory, manifest):
        store_file = _copy_store(directory, manifest, _generation())
        store = directory.open_store(read_only=False, name=store_file)
        try:
            ids = set(store.ids_of_post_ids(list(post_ids)).tolist())
            if filter:
                ids |= set(store.matching_ids(*filter.to_sql()).tolist())
            store.delete(sorted(ids))
            count = store.count()
            store.checkpoint()
        finally:
            store.close()
        _switch(directory, dataclasses.replace(manifest, store_file=store_file, count=count))
    return len(ids)


def compact(path: str | Path, *, target_recall: float | None = None) -> Manifest:
    """Rewrite the index without deleted posts: renumbered ids, new vectors, store and FAISS index."""
    with _writing(path) as (directory, manifest):
        directory.check_intact(manifest, manifest.vectors_file)
        generation = _generation()
        old = directory.open_store(read_only=True, name=manifest.store_file)
        try:
            ids = old.ids()
        finally:
            old.close()
        vectors_file, store_file = f"vectors.{generation}.f16", f"posts.{generation}.duckdb"
        vectors = directory.open_vectors(manifest)
        with open(directory.file(vectors_file), "wb") as out:
            for start in range(0, len(ids), _COPY_ROWS):
                vectors[ids[start : start + _COPY_ROWS]].tofile(out)
            sync_file(out)
        store = directory.open_store(read_only=False, name=store_file)
        try:
            store.copy_renumbered(directory.file(manifest.store_file))
            store.checkpoint()
        finally:
            store.close()
        compacted = dataclasses.replace(
            manifest, vectors_file=vectors_file, store_file=store_file, vector_rows=len(ids), count=len(ids),
        )
        target = target_recall if target_recall is not None else manifest.tuning.get("target", 0.95)
        compacted = write_faiss(directory, compacted, np.arange(len(ids)), f"faiss.{generation}.index", target)
        return _switch(directory, compacted)


def reindex(
    path: str | Path, spec: str, *, k_factor: int | None = None, max_memory: int | None = None,
    target_recall: float = 0.95,
) -> Manifest:
    """Rebuild the FAISS index of `path` as another type (`spec` as for build), from the stored vectors.

    No re-encoding. The new index goes to a new file and the manifest switches to it
    atomically, so a reader opening the index meanwhile gets the old index or the new one, whole;
    the write lock keeps an add or delete from being undone by the switch.
    """
    check("--k-factor", k_factor, K_FACTOR)
    check("--target-recall", target_recall, RECALL)
    check("--max-memory", max_memory, MEMORY)
    with _writing(path, except_faiss=True) as (directory, manifest):
        directory.check_intact(manifest, manifest.vectors_file)
        working = 256 << 20  # no encoder here: buffers only
        factory = effective_factory(factory_for(spec, manifest.count, manifest.dim, max_memory, working=working))
        plan = plan_index(factory, manifest.count, manifest.dim, k_factor=default_k_factor(factory), working=working)
        check_fits(plan, max_memory=max_memory, free_disk=free_disk(directory.path))
        store = directory.open_store(read_only=True, name=manifest.store_file)
        try:
            ids = store.ids()
        finally:
            store.close()
        manifest = dataclasses.replace(
            manifest, faiss_factory=factory, k_factor=k_factor if k_factor is not None else plan.k_factor,
        )
        manifest = write_faiss(directory, manifest, ids, f"faiss.{_generation()}.index", target_recall)
        return _switch(directory, manifest)
