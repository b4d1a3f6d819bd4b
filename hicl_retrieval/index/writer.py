"""The one writer of index files: a new segment, committed chunk by chunk, then sealed with its FAISS part.

A chunk's commit, in this order: its rejects appended to rejects.jsonl and synced, its vectors
appended to the segment's .f16 file and synced, then its post rows and a ledger row (records
consumed, vector rows, rejects size, the report so far) in one DuckDB transaction. The ledger is
the truth: reopening a segment cuts both files back to what its last ledger row covers, so a
writer killed anywhere resumes without losing or doubling a post. Build and add both write
through it; `seal` adds the segment's part of the FAISS index and syncs every file, after which
the segment is never changed and a manifest may name it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import numpy as np

from ..core.atomic import save_array, synced
from ..core.text import duplicate_key, extract_hashtags
from ..corpus import Post, Reject
from .changes import generation
from .directory import IndexDir
from .faiss_index import ADD_ROWS, VectorIndex, filled
from .manifest import REJECTS, Deletion, Segment
from .post_ids import bucket_starts, sorted_hashes
from .rows import write_rows
from .segments import SegmentVectors
from .store import LedgerRow, PostRow, PostStore

DUPLICATE_POST_ID = "duplicate_post_id"


def new_segment_name() -> str:
    """A name no earlier segment of the index has."""
    return f"seg-{generation()}"


def reject_line(reject: Reject) -> bytes:
    """One line of rejects.jsonl: the file, line and reason a user needs to fix the input."""
    row = {"source": reject.source, "line": reject.line, "reason": reject.reason, "detail": reject.detail}
    return json.dumps(row, ensure_ascii=False).encode("utf-8") + b"\n"


def nothing_indexed(read: int, rejected: Counter, rejects: Path | None = None, offset: int = 0, *,
                    verb: str = "indexed") -> str:
    """Why a build or add that stored no post failed: what was read, the top reject reasons and
    the first reject, read from `rejects` at `offset` (where this run's rejects begin)."""
    if not read:
        return f"no post {verb}: the corpus holds no records (its files are empty)"
    reasons = ", ".join(f"{reason} {count}" for reason, count in rejected.most_common(3))
    first = ""
    if rejects is not None and rejects.is_file():
        with open(rejects, "rb") as handle:
            handle.seek(offset)
            line = handle.readline()
        if line:
            row = json.loads(line)
            first = f"; the first: {row['source']} line {row['line']}: {row['reason']} ({row['detail']})"
    return f"no post {verb}: all {read} records were rejected ({reasons}){first}"


def _cut(path: Path, size: int) -> None:
    """Cut `path` back to `size` bytes: what an interrupted chunk wrote past its last commit."""
    if path.exists() and path.stat().st_size == size:
        return
    with open(path, "ab") as handle:
        handle.truncate(size)


class SegmentWriter:
    """Writes the segment `name` of the index at `directory`; use as a context manager.

    Posts get the ids `first_id`, `first_id` + 1, ... in the order they are committed.
    `rejects_start` is the size of rejects.jsonl that the index's manifest covers; a shard of a
    parallel build writes its rejects to a file of its own, `rejects`, merged when all are done.
    """

    def __init__(self, directory: IndexDir, name: str, *, dim: int, first_id: int, hashtag_rule: str,
                 rejects_start: int = 0, rejects: str = REJECTS) -> None:
        self.directory, self.name, self.dim, self.rejects_start = directory, name, dim, rejects_start
        self.rejects = rejects
        self.first_id, self.hashtag_rule = first_id, hashtag_rule
        self.segment = Segment(name=name, rows=0, posts=0, first_id=first_id, last_id=first_id - 1, faiss_file="")
        self.store = PostStore(directory.file(self.segment.store_file))
        try:
            ledger = self.store.ledger()
        except BaseException:
            self.store.close()
            raise
        self.last: LedgerRow | None = ledger[-1] if ledger else None
        """The last committed chunk (None for a new segment): where a resumed writer continues."""
        self.chunks = max((row.chunk for row in ledger), default=-1) + 1
        rows = self.last.vector_rows if self.last else 0
        self.next_id = first_id + rows
        _cut(directory.file(self.segment.vectors_file), rows * dim * 2)
        _cut(directory.file(rejects), self.last.rejects_bytes if self.last else rejects_start)
        self.vectors_out = open(directory.file(self.segment.vectors_file), "ab")
        self.rejects_out = open(directory.file(rejects), "ab")
        self.copied: np.ndarray | None = None
        """The ids of a copy's posts (see `copy`); None for new posts, numbered from `first_id`."""

    @property
    def finished(self) -> bool:
        """Whether the final ledger row (chunk -1) is committed: only sealing is left."""
        return self.last is not None and self.last.chunk == -1

    def __enter__(self) -> SegmentWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.vectors_out.close()
        self.rejects_out.close()
        self.store.close()

    def discard(self) -> None:
        """Close and remove the segment's files and cut its rejects: a change that turned out to change nothing."""
        self.close()
        _cut(self.directory.file(self.rejects), self.rejects_start)
        for name in self.segment.files:
            self.directory.file(name).unlink(missing_ok=True)
            self.directory.file(name + ".wal").unlink(missing_ok=True)

    def _rows(self, posts: Sequence[Post]) -> list[PostRow]:
        """The store rows of `posts`, numbered from the next id."""
        return [
            PostRow(id=self.next_id + number, post_id=p.post_id, text=p.text,
                    hashtags=extract_hashtags(p.text, self.hashtag_rule), author=p.author, created_at=p.created_at,
                    retweet_of=p.retweet_of, dup_key=duplicate_key(p.text), source=p.source, line=p.line)
            for number, p in enumerate(posts)
        ]

    def commit(self, posts: Sequence[Post], vectors: np.ndarray, rejects: Sequence[Reject], *, records: int,
               stats: str = "{}") -> None:
        """Make one chunk durable: `posts` with their `vectors`, the chunk's `rejects`, `records` consumed in all."""
        if len(posts) != len(vectors):
            raise ValueError(f"{len(posts)} posts but {len(vectors)} vectors")
        for reject in rejects:
            self.rejects_out.write(reject_line(reject))
        np.asarray(vectors, dtype=np.float16).reshape(len(posts), self.dim).tofile(self.vectors_out)
        rows = self._rows(posts)
        self._commit(rows, records, stats, self.chunks)
        self.next_id += len(posts)
        self.chunks += 1

    def repeated_post_ids(self) -> list[tuple[int, str, str, int]]:
        """(id, post_id, source, line) of the posts repeating an earlier post's post id."""
        return self.store.repeated_post_ids()

    def finish(self, repeated: list[tuple[int, str, str, int]], *, records: int, stats: str = "{}",
               rejected: bool = True) -> None:
        """Drop the `repeated` posts (`repeated_post_ids`), each a reject (unless not `rejected`: an add skips
        them), and commit the final ledger row.

        Their vectors stay in the file; their ids are gaps.
        """
        for _, post_id, source, line in repeated if rejected else ():
            self.rejects_out.write(reject_line(Reject(source, line, DUPLICATE_POST_ID,
                                                      f"post id {post_id} appeared earlier")))
        self._commit([], records, stats, -1, delete=[row[0] for row in repeated])

    def _commit(self, rows: list[PostRow], records: int, stats: str, chunk: int, delete: Sequence[int] = ()) -> None:
        ledger = LedgerRow(chunk=chunk, records=records, vector_rows=synced(self.vectors_out) // (2 * self.dim),
                           rejects_bytes=synced(self.rejects_out), stats=stats)
        self.store.commit_chunk(rows, ledger, delete=delete)
        self.last = ledger

    def copy(self, stores: Sequence[Path], deleted: np.ndarray, vectors: SegmentVectors) -> None:
        """Fill this new segment with the posts of the segment `stores` less the `deleted` ids, keeping their ids,
        and their `vectors`: a compaction's merged segment."""
        self.store.copy_from(stores, deleted)
        self.store.checkpoint()
        self.copied = self.store.ids()
        for start in range(0, len(self.copied), ADD_ROWS):
            vectors[self.copied[start : start + ADD_ROWS]].tofile(self.vectors_out)
        synced(self.vectors_out)

    def vector_ids(self) -> np.ndarray:
        """The id of each vector row: consecutive for new posts, the kept ids for a copy."""
        return self.copied if self.copied is not None else np.arange(self.first_id, self.next_id, dtype=np.int64)

    def vectors(self) -> SegmentVectors:
        """The segment's vectors so far, memory-mapped, indexed by id."""
        ids = self.vector_ids()
        return SegmentVectors([(ids, self.directory.vectors_file(self.segment.vectors_file, len(ids), self.dim))],
                              self.dim)

    def seal(self, trained: VectorIndex, ids: np.ndarray | None = None) -> Segment:
        """Write the segment's part of the FAISS index (a copy of `trained` holding its posts) and its ids file,
        sync every file: the finished segment, which a manifest may now name.

        The posts of the part are those of the store (a build's repeated post ids are not among them);
        `ids`, when the caller has read them already (`store.ids()`), saves reading them again.
        """
        self.store.checkpoint()
        ids = self.store.ids() if ids is None else ids
        vector_ids = self.vector_ids()
        faiss_file, rows_file = f"{self.name}.faiss", f"{self.name}.rows"
        post_ids_file, buckets_file = f"{self.name}.postids.npy", f"{self.name}.postids.buckets.npy"
        write_part(self.directory.file(faiss_file), trained, self.vectors(), ids)
        post_ids = write_rows(self.store, vector_ids, self.directory.file(rows_file))
        hashes = sorted_hashes(post_ids)
        save_array(self.directory.file(post_ids_file), hashes)
        save_array(self.directory.file(buckets_file), bucket_starts(hashes))
        save_array(self.directory.file(self.segment.ids_file), vector_ids)
        self.segment = Segment(name=self.name, rows=len(vector_ids), posts=len(ids), first_id=int(vector_ids[0]),
                               last_id=int(vector_ids[-1]), faiss_file=faiss_file, rows_file=rows_file,
                               post_ids_file=post_ids_file, post_id_buckets_file=buckets_file)
        return self.segment


def write_part(path: Path, trained: VectorIndex, vectors: SegmentVectors, ids: np.ndarray) -> None:
    """A segment's part of the FAISS index: a copy of the `trained` index holding the `vectors` of `ids`.

    An IVF part keeps only its inverted lists: the coarse quantizer is the trained index's, under
    which opening stacks every part's lists, so a change never writes a copy of it (at 45M posts,
    65,536 centroids of 768 floats are 200 MB). A fast-scan part, searched as a shard, keeps its copy.
    """
    part = filled(trained, vectors, ids)
    if not part.is_fast_scan:
        part.drop_quantizer()
    part.save(path)


def write_deletion(directory: IndexDir, name: str, ids: np.ndarray) -> Deletion:
    """A deletion record: the file `name` holding the deleted `ids` (int64), synced."""
    save_array(directory.file(name), np.asarray(ids, dtype=np.int64))
    return Deletion(name, len(ids))


def write_trained(directory: IndexDir, trained: VectorIndex, name: str | None = None) -> str:
    """Save the trained, empty FAISS index every part copies (as `name`, or a new name); its file name."""
    name = name or f"trained-{generation()}.faiss"
    trained.save(directory.file(name))
    return name
