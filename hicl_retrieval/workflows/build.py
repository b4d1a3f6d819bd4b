"""Build an index directory from corpus files: read, encode, store, index, commit."""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..core import native
from ..core.config import BuildConfig
from ..core.errors import HiclError
from ..core.text import duplicate_key, extract_hashtags
from ..corpus import Corpus, Post, Record, Reject
from ..encoding.encoder import Encoder
from ..index.directory import FAISS_INDEX, REJECTS, VECTORS, IndexDir, Manifest
from ..index.faiss_index import VectorIndex, default_k_factor, effective_factory
from ..index.planning import IndexPlan, check_fits, factory_for, plan_index, train_rows
from ..index.tuning import tune

LOG = logging.getLogger(__name__)
DUPLICATE_POST_ID = "duplicate_post_id"
_ADD_ROWS = 65536  # vectors converted to float32 and added to FAISS at a time


@dataclass
class BuildReport:
    """What a build did; every record read is indexed, rejected or a duplicate post id."""

    index: Path = Path()
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
    resumed: bool = False
    """Whether this run continued an interrupted build (counts and times cover every run)."""
    warnings: list[str] = field(default_factory=list)
    """What the user should look at although nothing failed (e.g. times of a file unreadable)."""

    @classmethod
    def from_stats(cls, stats: dict) -> BuildReport:
        """The report of an interrupted build, from its last ledger row (see `as_dict`)."""
        return cls(
            read=stats["read"], indexed=stats["indexed"], rejected=Counter(stats["rejected"]),
            duplicates=stats["duplicates"], repeated_texts=stats["repeated_texts"], notes=Counter(stats["notes"]),
            seconds=stats["seconds"], encode_seconds=stats["encode_seconds"],
        )

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
            "resumed": self.resumed,
            "warnings": list(self.warnings),
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
        if self.resumed:
            lines.insert(0, "resumed an interrupted build; counts and times cover all of its runs")
        if self.notes:
            lines.append("notes: " + ", ".join(f"{k} {v}" for k, v in sorted(self.notes.items())))
        if rejected or self.duplicates:
            lines.append(f"rejected rows, with file, line and reason: {self.index / REJECTS}")
        lines += [f"warning: {warning}" for warning in self.warnings]
        return "\n".join(lines)


def advance(bar, records: int) -> None:
    """Move the progress bar past `records` more records, raising its estimated total when passed."""
    bar.update(records)
    if bar.total is not None and bar.n > bar.total:
        bar.total = bar.n


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


def record_chunks(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    """`records` in lists of `size`: one list is encoded and committed at a time."""
    iterator = iter(records)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def write_reject(handle, reject: Reject) -> None:
    """One line of rejects.jsonl: the file, line and reason a user needs to fix the input."""
    line = json.dumps(
        {"source": reject.source, "line": reject.line, "reason": reject.reason, "detail": reject.detail},
        ensure_ascii=False,
    )
    handle.write(line.encode("utf-8") + b"\n")


def post_rows(posts: Sequence[Post], first_id: int, hashtag_rule: str) -> dict[str, list]:
    """The post store's columns for `posts`, numbered from `first_id` (= their vector rows)."""
    return {
        "id": list(range(first_id, first_id + len(posts))),
        "post_id": [p.post_id for p in posts],
        "text": [p.text for p in posts],
        "hashtags": [extract_hashtags(p.text, hashtag_rule) for p in posts],
        "author": [p.author for p in posts],
        "created_at": [p.created_at for p in posts],
        "retweet_of": [p.retweet_of for p in posts],
        "dup_key": [duplicate_key(p.text) for p in posts],
        "source": [p.source for p in posts],
        "line": [p.line for p in posts],
    }


def _build_state(posts_in: Corpus, encoder: Encoder, config: BuildConfig) -> dict:
    """What must not change between an interrupted build and its resumption.

    The index type is not part of it: it is made at the end from the stored vectors, so an
    interrupted build may be resumed with another ``--index`` or ``--max-memory``.
    """
    files = []
    for file in posts_in.files:
        stat = file.path.stat()
        files.append({"path": str(file.path.resolve()), "format": file.format,
                      "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns})
    return {
        "corpus": files,
        "reader": dataclasses.asdict(config.reader),
        "encoder": encoder.config.to_dict(),
        "hashtag_rule": config.hashtag_rule,
    }


def plan_for(spec: str, posts: int, encoder: Encoder, config: BuildConfig) -> IndexPlan:
    """The index `spec` resolves to for `posts` posts, with its RAM and disk needs."""
    working = 2 * encoder.model_bytes + (256 << 20)  # the model, its activations, a chunk, DuckDB
    factory = effective_factory(factory_for(spec, posts, encoder.dim, config.max_memory, working=working))
    VectorIndex.create(encoder.dim, factory)  # a bad factory string fails here, before any work
    return plan_index(factory, posts, encoder.dim, k_factor=default_k_factor(factory), working=working)


def free_disk(path: Path) -> int:
    """Free bytes on the disk `path` will be on (it may not exist yet)."""
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def truncate_file(path: Path, size: int) -> None:
    """Cut `path` back to `size` bytes: what an interrupted chunk wrote past its last commit."""
    with open(path, "ab") as handle:
        handle.truncate(size)


def sync_file(handle) -> int:
    """Flush and fsync `handle`; its size, which a commit records so a resumption can cut back to it."""
    handle.flush()
    os.fsync(handle.fileno())
    return handle.tell()


def build_index(
    corpus: Sequence[str | Path],
    out: str | Path,
    config: BuildConfig,
    *,
    encoder: Encoder | None = None,
    announce: Callable[[str], None] = LOG.info,
) -> BuildReport:
    """Index every good post of the `corpus` files into the directory `out`.

    Input files are checked (existence, format, columns) before anything is written. Posts
    are read, encoded and stored `config.chunk_size` at a time, so memory stays bounded.
    Each chunk is durable once committed: its vectors and rejects are synced to disk, then its
    posts and a ledger row (records consumed, vector rows, rejects size) are committed in one
    DuckDB transaction. A build that stops anywhere (even ``kill -9``) resumes when run again
    with the same inputs and settings: files are cut back to the last committed chunk and
    reading resumes after the last record it covered, so no post is lost or stored twice.
    The FAISS index and, last, the manifest are written at the end.

    Before encoding, the index type is resolved for the corpus's estimated size and its RAM
    and disk needs are passed to `announce`; a build that would not fit `config.max_memory`
    or the free disk is refused. At the end the type is resolved again for the exact count.
    """
    started = time.perf_counter()
    posts_in = Corpus(corpus, config.reader)
    if all(file.path.stat().st_size == 0 for file in posts_in.files):
        raise HiclError(nothing_indexed(0, Counter()))
    if posts_in.skipped_summary():
        announce(posts_in.skipped_summary())
    native.set_threads(config.threads)
    tick = time.perf_counter()
    encoder = encoder or Encoder(config.encoder)
    load_seconds = time.perf_counter() - tick
    estimated = posts_in.estimated_records()
    plan = plan_for(config.faiss_factory, estimated, encoder, config)
    announce(f"plan: {plan.describe()}")
    check_fits(plan, max_memory=config.max_memory, free_disk=free_disk(Path(out)))
    state = _build_state(posts_in, encoder, config)
    folder_existed = Path(out).is_dir()
    directory, resuming = IndexDir.for_build(out, state, overwrite=config.overwrite)
    store = directory.open_store(read_only=False)
    try:
        ledger = store.ledger()
        last = ledger[-1] if ledger else {"chunk": -1, "records": 0, "vector_rows": 0, "rejects_bytes": 0}
        report = BuildReport.from_stats(json.loads(last["stats"])) if ledger else BuildReport()
        report.index, report.load_seconds, report.resumed = directory.path, load_seconds, resuming
        earlier_seconds = report.seconds
        next_id, chunk_number = last["vector_rows"], max((row["chunk"] for row in ledger), default=-1) + 1
        truncate_file(directory.file(VECTORS), next_id * encoder.dim * 2)
        truncate_file(directory.file(REJECTS), last["rejects_bytes"])
        if resuming:
            LOG.info("resuming %s after %d records (%d posts)", directory.path, last["records"], next_id)
        finished = bool(ledger) and ledger[-1]["chunk"] == -1
        with (
            open(directory.file(REJECTS), "ab") as rejects,
            open(directory.file(VECTORS), "ab") as vectors_out,
            tqdm(desc="reading and encoding", unit=" records", initial=last["records"], total=max(estimated, 1),
                 disable=not config.progress) as bar,
        ):
            records = itertools.islice(posts_in, last["records"], None)
            for chunk in (() if finished else record_chunks(records, config.chunk_size)):
                posts = [r for r in chunk if isinstance(r, Post)]
                for record in chunk:
                    if isinstance(record, Reject):
                        report.rejected[record.reason] += 1
                        write_reject(rejects, record)
                    else:
                        report.notes.update(record.notes)
                report.read += len(chunk)
                tick = time.perf_counter()
                vectors = encoder.encode([p.text for p in posts], batch_size=config.batch_size, progress=bar)
                report.encode_seconds += time.perf_counter() - tick
                advance(bar, len(chunk) - len(posts))
                vectors.astype(np.float16).tofile(vectors_out)
                rows = post_rows(posts, next_id, config.hashtag_rule)
                next_id += len(posts)
                report.seconds = earlier_seconds + time.perf_counter() - started
                store.commit_chunk(rows, {
                    "chunk": chunk_number, "records": report.read,
                    "vector_rows": sync_file(vectors_out) // (2 * encoder.dim),
                    "rejects_bytes": sync_file(rejects), "stats": json.dumps(report.as_dict()),
                })
                chunk_number += 1
            if not finished:
                repeated = store.repeated_post_ids()
                for _, post_id, source, line in repeated:
                    reject = Reject(source, line, DUPLICATE_POST_ID, f"post id {post_id} appeared earlier")
                    write_reject(rejects, reject)
                report.duplicates = len(repeated)
                store.commit_chunk(post_rows([], next_id, config.hashtag_rule), {
                    "chunk": -1, "records": report.read, "vector_rows": next_id,
                    "rejects_bytes": sync_file(rejects), "stats": json.dumps(report.as_dict()),
                }, delete=[row[0] for row in repeated])
        report.indexed = store.count()
        report.repeated_texts = store.repeated_texts()
        report.warnings = posts_in.time_warnings
        ids = store.ids()
        store.checkpoint()
    finally:
        store.close()
    if report.indexed == 0:
        message = nothing_indexed(report.read, report.rejected, directory.file(REJECTS))
        directory.discard(keep_folder=folder_existed)  # nothing worth resuming; a rerun starts clean
        raise HiclError(message)

    plan = plan_for(config.faiss_factory, report.indexed, encoder, config)
    check_fits(plan, max_memory=config.max_memory)  # the disk is mostly written by now
    manifest = Manifest(
        encoder=encoder.config,
        model_revision=encoder.revision,
        dim=encoder.dim,
        faiss_factory=plan.factory,
        count=report.indexed,
        vector_rows=next_id,
        k_factor=plan.k_factor,
        hashtag_rule=config.hashtag_rule,
    )
    manifest = write_faiss(directory, manifest, ids, FAISS_INDEX, config.target_recall)
    report.seconds = earlier_seconds + time.perf_counter() - started
    directory.commit(dataclasses.replace(manifest, stats=report.as_dict()))
    return report


def write_faiss(directory: IndexDir, manifest: Manifest, ids: np.ndarray, name: str, target: float) -> Manifest:
    """Build, tune and save the FAISS index `manifest` describes as `name`; the manifest to commit."""
    vectors = directory.open_vectors(manifest)
    index = build_faiss_index(vectors, ids, manifest.faiss_factory, manifest.dim)
    tuning = tune(index, vectors, ids, k_factor=manifest.k_factor, target=target)
    if tuning.params:
        LOG.info("tuned %s: recall@10 %.3f (target %.2f)", tuning.params, tuning.recall_at_10, target)
        if tuning.recall_at_10 < target:
            LOG.warning("%s reaches recall@10 %.3f only, below the target %.2f", manifest.faiss_factory,
                        tuning.recall_at_10, target)
    index.save(directory.file(name))
    return dataclasses.replace(
        manifest, faiss_file=name, search_params=tuning.params,
        tuning=tuning.to_dict() if tuning.params else {},
    )


def build_faiss_index(vectors: np.ndarray, ids: np.ndarray, factory: str, dim: int) -> VectorIndex:
    """The FAISS index of the rows `ids` of `vectors`, trained first (on a sample) if the type needs it."""
    index = VectorIndex.create(dim, factory)
    if not index.is_trained:
        rng = np.random.default_rng(0)
        sample = np.sort(rng.choice(ids, size=train_rows(factory, len(ids)), replace=False))
        LOG.info("training %s on %d vectors", factory, len(sample))
        index.train(vectors[sample].astype(np.float32))
    for start in range(0, len(ids), _ADD_ROWS):
        chunk = ids[start : start + _ADD_ROWS]
        index.add(vectors[chunk].astype(np.float32), chunk)
    return index
