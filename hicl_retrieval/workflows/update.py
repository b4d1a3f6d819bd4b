"""Change a finished index: add posts (a new segment) and delete them (a deletion record).

Neither rewrites a file the index has: `add` writes one new segment through the `SegmentWriter`,
`delete` one small file of ids, and each switches by committing the manifest (index/changes.py),
so a change costs the size of the change and readers always see a whole index.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..core.bounds import COUNT, OPTIONAL_COUNT, check
from ..core.config import BuildConfig, DeviceConfig, RayConfig, ReaderConfig
from ..core.errors import HiclError
from ..core.progress import advance
from ..core.text import check_unicode
from ..corpus import Corpus, Post, Records, Reject, normalize_post_id, record_chunks
from ..corpus.shards import Shard, plan_shards
from ..encoding.devices import check_batch_limits, check_index_dtype, resolve_device
from ..encoding.encoder import Encoder
from ..encoding.pools import Encoding, open_encoding
from ..index.changes import generation, remove_unnamed, switch, writing
from ..index.directory import IndexDir
from ..index.faiss_index import VectorIndex
from ..index.filters import Filter
from ..index.manifest import MANIFEST, REJECTS, WRITE_LOCK, Manifest, Segment
from ..index.store import PostStore
from ..index.writer import SegmentWriter, new_segment_name, nothing_indexed, write_deletion
from .sharded_build import PARALLEL_FROM, add_sharded, shard_bytes, worker_count


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
    running: DeviceConfig | None = None,
    ray: RayConfig | None = None,
    chunk_size: int = 4096,
    progress: bool = True,
    workers: int | None = None,
    shard_bytes: int | None = None,
) -> AddReport:
    """Add the good posts of the files `corpus` to the index at `path` as one new segment, encoding only them.

    Posts whose post id the index (or an earlier line of `corpus`) already holds are skipped,
    checked a chunk at a time against the post store. The new segment's FAISS part starts from
    the index's trained index (an IVF index keeps its centroids; `compact` re-trains them after
    large additions). Nothing the index already has is rewritten. Posts are encoded in the
    precision the index records, where `running` says or in Ray actors with `ray` (as `build`).

    With `workers` (default: as `build_index` chooses them, one a core from `PARALLEL_FROM` records
    on, unless an `encoder` object is given) and a corpus of several shards (`shard_bytes` as for
    a build), worker processes add a segment a shard, each skipping the post ids the index holds;
    a post id repeated across shards is kept once, the first in corpus order, as one process keeps it.
    """
    check("--chunk-size", chunk_size, COUNT)
    check("--workers", workers, OPTIONAL_COUNT)
    check("--shard-bytes", shard_bytes, OPTIONAL_COUNT)
    posts_in = Corpus(corpus, reader or ReaderConfig())
    if ray is None and (workers or 0) != 1 and encoder is None:
        return _add_from(path, posts_in, None, running, None, chunk_size, progress, (workers, shard_bytes))
    return _add_from(path, posts_in, encoder, running, ray, chunk_size, progress)


def add_records(
    path: str | Path,
    records: Iterable[dict[str, Any] | Post],
    *,
    source: str = "records",
    reader: ReaderConfig | None = None,
    encoder: Encoder | None = None,
    running: DeviceConfig | None = None,
    chunk_size: int = 4096,
    progress: bool = False,
) -> AddReport:
    """`add_posts` of posts given as objects, not files: dicts read as the JSON reader reads one object of a
    file (``{"id": "1", "text": "...", "author": "...", "created_at": "..."}`` or an API tweet), or `Post`s.

    Each post records `source` and its number in `records` (from 1) as where it came from; `reader`
    gives the field names and time format as it does for files.
    """
    check("--chunk-size", chunk_size, COUNT)
    return _add_from(path, Records(records, source, reader), encoder, running, None, chunk_size, progress)


def _add_from(path: str | Path, posts_in: Corpus | Records, encoder: Encoder | None, running: DeviceConfig | None,
              ray: RayConfig | None, chunk_size: int, progress: bool,
              parallel: tuple[int | None, int | None] | None = None) -> AddReport:
    """The add; `parallel`, (workers, shard bytes), where worker processes may add the corpus's shards."""
    started = time.perf_counter()
    report = AddReport(warnings=[posts_in.skipped_summary()] if posts_in.skipped else [])
    with writing(path) as (directory, manifest):
        shards = _shards(posts_in, running or DeviceConfig(), *parallel) if parallel else None
        if shards:
            return _add_in_parallel(directory, manifest, posts_in, *shards, running or DeviceConfig(), report,
                                    chunk_size, progress, started)
        encoding = open_encoding(manifest.encoder, running or DeviceConfig(), ray, encoder=encoder,
                                 index=str(directory.path))
        try:
            return _add(directory, manifest, posts_in, encoding, report, chunk_size, progress, started)
        finally:
            encoding.close()


def _add(directory: IndexDir, manifest: Manifest, posts_in: Corpus | Records, encoder: Encoding, report: AddReport,
         chunk_size: int, progress: bool, started: float) -> AddReport:
    if encoder.dim != manifest.dim:
        raise HiclError(f"the encoder gives {encoder.dim}-dimensional vectors, the index holds {manifest.dim}")
    directory.check_intact(manifest, manifest.trained_file)  # every new part starts as a copy of it
    rejects_start = manifest.files.get(REJECTS, 0)
    with (
        directory.open_store(manifest) as existing,
        SegmentWriter(directory, new_segment_name(), dim=manifest.dim, first_id=manifest.next_id,
                      hashtag_rule=manifest.hashtag_rule, rejects_start=rejects_start) as writer,
        tqdm(desc="adding", unit=" records", total=max(posts_in.estimated_records(), 1),
             disable=not progress) as bar,
    ):
        chunks = _new_posts(posts_in, existing, chunk_size)
        for (chunk, fresh, rejects, records), vectors in encoder.encoded(chunks, lambda c: [p.text for p in c[1]],
                                                                          progress=bar):
            report.read = records
            report.rejected.update(reject.reason for reject in rejects)
            report.known += sum(1 for record in chunk if isinstance(record, Post)) - len(fresh)
            advance(bar, len(chunk) - len(fresh))
            writer.commit(fresh, vectors, rejects, records=records)
        report.added = writer.next_id - manifest.next_id
        report.warnings += posts_in.time_warnings
        if report.added == 0:
            return _unchanged(directory, report, rejects_start, writer.discard)
        segment = writer.seal(VectorIndex.load(directory.file(manifest.trained_file)))
    return _switched(directory, manifest, [segment], report, started)


def _unchanged(directory: IndexDir, report: AddReport, rejects_start: int, discard: Callable[[], None]) -> AddReport:
    """Every post known or rejected: what was written is `discard`ed and the index stays as it is; an add of
    nothing but rejects fails, naming the first."""
    message = nothing_indexed(report.read, report.rejected, directory.file(REJECTS), rejects_start,
                              verb="added") + f"; {directory.path} is unchanged"
    discard()
    if report.known == 0:
        raise HiclError(message)
    return report


def _switched(directory: IndexDir, manifest: Manifest, segments: Sequence[Segment], report: AddReport,
              started: float) -> AddReport:
    """The manifest switched to name the added `segments` too."""
    report.seconds = time.perf_counter() - started
    changed = manifest
    for segment in segments:
        changed = changed.with_segment(segment)
    switch(directory, dataclasses.replace(
        changed, stats={**manifest.stats, "added": manifest.stats.get("added", 0) + report.added}))
    return report


def _shards(posts_in: Corpus, running: DeviceConfig, workers: int | None,
            size: int | None) -> tuple[list[Shard], int] | None:
    """(the corpus's shards, the workers) where worker processes add them: several workers, asked for or by
    default (a corpus of `PARALLEL_FROM` records or more), and several shards; else None."""
    if workers is None and posts_in.estimated_records() < PARALLEL_FROM:
        return None
    count = worker_count(workers, resolve_device(running.device).startswith("cpu"))
    if count < 2:
        return None
    shards = plan_shards(posts_in.files, size or shard_bytes(posts_in.files, count), posts_in.config)
    return (shards, min(count, len(shards))) if len(shards) > 1 else None


def _add_in_parallel(directory: IndexDir, manifest: Manifest, posts_in: Corpus, shards: list[Shard], workers: int,
                     running: DeviceConfig, report: AddReport, chunk_size: int, progress: bool,
                     started: float) -> AddReport:
    """The add of `shards` by `workers` processes (`add_sharded`), then the one switch of the manifest."""
    check_index_dtype(manifest.encoder.dtype, running.dtype, str(directory.path))
    check_batch_limits(running.max_tokens_per_batch, running.batch_size, manifest.encoder.max_length)
    directory.check_intact(manifest, manifest.trained_file)  # every new part starts as a copy of it
    config = BuildConfig(encoder=manifest.encoder, reader=posts_in.config, chunk_size=chunk_size,
                         encoding=dataclasses.replace(running, dtype=manifest.encoder.dtype), workers=workers,
                         hashtag_rule=manifest.hashtag_rule, progress=progress)
    rejects_start = manifest.files.get(REJECTS, 0)
    segments, built, known = add_sharded(directory, manifest, shards, workers, config,
                                         posts_in.estimated_records())
    report.read, report.rejected, report.known = built.read, built.rejected, known
    report.added = sum(segment.posts for segment in segments)
    report.warnings += built.warnings
    if report.added == 0:
        def discard() -> None:  # the shards' segments and the rejects they appended
            with open(directory.file(REJECTS), "ab") as rejects:
                rejects.truncate(rejects_start)
            remove_unnamed(directory, {MANIFEST, WRITE_LOCK, REJECTS, *manifest.named_files()})

        return _unchanged(directory, report, rejects_start, discard)
    return _switched(directory, manifest, segments, report, started)


def _new_posts(posts_in: Corpus | Records, existing: PostStore, chunk_size: int) -> Iterator[tuple]:
    """(chunk, its posts whose post id is new, its rejects, records read so far) for each chunk."""
    seen: set[str] = set()
    records = 0
    for chunk in record_chunks(posts_in, chunk_size):
        records += len(chunk)
        fresh = existing.unknown([r for r in chunk if isinstance(r, Post)], seen)
        yield chunk, fresh, [r for r in chunk if isinstance(r, Reject)], records


def delete_posts(path: str | Path, *, post_ids: Sequence[str] = (), filter: Filter | None = None) -> int:
    """Remove the posts with these post ids or meeting `filter` from results at once; returns how many.

    A deletion record of their ids is written; searches skip them and still return k hits.
    Their rows and vectors stay in the segment files until `compact`.
    """
    for post_id in post_ids:
        check_unicode(str(post_id), f"the post id {post_id!r}")
    post_ids = [normalized for normalized in map(normalize_post_id, post_ids) if normalized]  # as readers store them
    if not post_ids and not filter:
        raise HiclError("say which posts to delete: post ids or a filter")
    with writing(path) as (directory, manifest):
        with directory.open_store(manifest) as store:
            ids = set(store.ids_of_post_ids(list(post_ids)).tolist())
            if filter:
                ids |= set(store.matching_ids(*filter.to_sql()).tolist())
        if not ids:
            return 0
        deletion = write_deletion(directory, f"del-{generation()}.npy", np.array(sorted(ids), dtype=np.int64))
        switch(directory, dataclasses.replace(manifest, deletions=(*manifest.deletions, deletion),
                                              count=manifest.count - len(ids)))
    return len(ids)
