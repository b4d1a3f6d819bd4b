"""Change a finished index: add posts (a new segment) and delete them (a deletion record).

Neither rewrites a file the index has: `add` writes one new segment through the `SegmentWriter`,
`delete` one small file of ids, and each switches by committing the manifest (index/changes.py),
so a change costs the size of the change and readers always see a whole index.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..core.bounds import COUNT, check
from ..core.config import DeviceConfig, RayConfig, ReaderConfig
from ..core.errors import HiclError
from ..core.progress import advance
from ..core.text import check_unicode
from ..corpus import Corpus, Post, Records, Reject, normalize_post_id, record_chunks
from ..encoding.encoder import Encoder
from ..encoding.pools import Encoding, open_encoding
from ..index.changes import generation, switch, writing
from ..index.directory import IndexDir
from ..index.faiss_index import VectorIndex
from ..index.filters import Filter
from ..index.manifest import REJECTS, Manifest
from ..index.store import PostStore
from ..index.writer import SegmentWriter, new_segment_name, nothing_indexed, write_deletion


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
) -> AddReport:
    """Add the good posts of the files `corpus` to the index at `path` as one new segment, encoding only them.

    Posts whose post id the index (or an earlier line of `corpus`) already holds are skipped,
    checked a chunk at a time against the post store. The new segment's FAISS part starts from
    the index's trained index (an IVF index keeps its centroids; `compact` re-trains them after
    large additions). Nothing the index already has is rewritten. Posts are encoded in the
    precision the index records, where `running` says or in Ray actors with `ray` (as `build`).
    """
    check("--chunk-size", chunk_size, COUNT)
    return _add_from(path, Corpus(corpus, reader or ReaderConfig()), encoder, running, ray, chunk_size, progress)


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
              ray: RayConfig | None, chunk_size: int, progress: bool) -> AddReport:
    started = time.perf_counter()
    report = AddReport(warnings=[posts_in.skipped_summary()] if posts_in.skipped else [])
    with writing(path) as (directory, manifest):
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
        if report.added == 0:  # every post known or rejected: the index stays as it is
            message = nothing_indexed(report.read, report.rejected, directory.file(REJECTS), rejects_start,
                                      verb="added") + f"; {directory.path} is unchanged"
            writer.discard()
            if report.known == 0:
                raise HiclError(message)
            return report
        segment = writer.seal(VectorIndex.load(directory.file(manifest.trained_file)))
    report.seconds = time.perf_counter() - started
    switch(directory, manifest.with_segment(
        segment, stats={**manifest.stats, "added": manifest.stats.get("added", 0) + report.added}))
    return report


def _new_posts(posts_in: Corpus | Records, existing: PostStore, chunk_size: int) -> Iterator[tuple]:
    """(chunk, its posts whose post id is new, its rejects, records read so far) for each chunk."""
    seen: set[str] = set()
    records = 0
    for chunk in record_chunks(posts_in, chunk_size):
        records += len(chunk)
        posts = [r for r in chunk if isinstance(r, Post)]
        known = seen | existing.existing_post_ids([p.post_id for p in posts if p.post_id is not None])
        fresh = []
        for post in posts:
            if post.post_id is not None and post.post_id in known:
                continue
            known.add(post.post_id)
            seen.add(post.post_id)
            fresh.append(post)
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
