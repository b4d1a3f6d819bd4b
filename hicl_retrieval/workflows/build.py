"""Build an index directory from corpus files: read, encode, write a segment, train FAISS, commit."""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from ..core import native
from ..core.config import BuildConfig
from ..core.errors import HiclError
from ..core.files import check_name
from ..core.progress import advance
from ..corpus import Corpus, Post, Reject, record_chunks
from ..encoding.encoder import Encoder
from ..encoding.pools import Encoding, open_encoding
from ..index.directory import IndexDir
from ..index.faiss_index import VectorIndex, default_k_factor, effective_factory, trained_index
from ..index.manifest import REJECTS, Manifest
from ..index.planning import IndexPlan, check_fits, check_trainable, factory_for, free_disk, plan_index
from ..index.tuning import tuned_manifest
from ..index.writer import SegmentWriter, nothing_indexed, write_trained

LOG = logging.getLogger(__name__)
BUILD_SEGMENT = "seg-0"
"""A build writes one segment under this name: a rerun of an interrupted build finds it there."""
BUILD_TRAINED = "trained-0.faiss"


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
    """Part of `seconds` the build waited for chunks to be read and encoded (the rest is writing them)."""
    encoded_on: str = ""
    """The device, or the Ray pool and its devices, of the last run."""
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
            encoded_on=stats.get("encoded_on", ""),
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
            "encoded_on": self.encoded_on,
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
            f"reading and encoding {self.encode_seconds:.1f} s "
            f"({100 * self.encode_seconds / self.seconds if self.seconds else 0:.0f}% of the time) on {self.encoded_on}",
        ]
        if self.resumed:
            lines.insert(0, "resumed an interrupted build; counts and times cover all of its runs")
        if self.notes:
            lines.append("notes: " + ", ".join(f"{k} {v}" for k, v in sorted(self.notes.items())))
        if rejected or self.duplicates:
            lines.append(f"rejected rows, with file, line and reason: {self.index / REJECTS}")
        lines += [f"warning: {warning}" for warning in self.warnings]
        return "\n".join(lines)


def _build_state(posts_in: Corpus, encoder: Encoding, config: BuildConfig) -> dict:
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


def plan_for(spec: str, posts: int, encoder: Encoding, config: BuildConfig) -> IndexPlan:
    """The index `spec` resolves to for `posts` posts, with its RAM and disk needs."""
    working = 2 * encoder.model_bytes + (256 << 20)  # the model, its activations, a chunk, DuckDB
    factory = effective_factory(factory_for(spec, posts, encoder.dim, config.max_memory, working=working))
    VectorIndex.create(encoder.dim, factory)  # a bad factory string fails here, before any work
    return plan_index(factory, posts, encoder.dim, k_factor=default_k_factor(factory), working=working)


def _split(chunk: list) -> tuple[list, list[Post], list[Reject]]:
    return chunk, [r for r in chunk if isinstance(r, Post)], [r for r in chunk if isinstance(r, Reject)]


def _waited_for(items: Iterator, report: BuildReport) -> Iterator:
    """`items`, the time waited for each added to the report's `encode_seconds`."""
    while True:
        tick = time.perf_counter()
        try:
            item = next(items)
        except StopIteration:
            return
        finally:
            report.encode_seconds += time.perf_counter() - tick
        yield item


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
    are read, encoded and stored `config.chunk_size` at a time, so memory stays bounded, into
    one segment through the `SegmentWriter`, which makes each chunk durable once committed. A
    build that stops anywhere (even ``kill -9``) resumes when run again with the same inputs
    and settings: the files are cut back to the last committed chunk and reading resumes after
    the last record it covered, so no post is lost or stored twice. The FAISS index is trained
    and the segment sealed at the end; the manifest is written last.

    Before encoding, the index type is resolved for the corpus's estimated size and its RAM
    and disk needs are passed to `announce`; a build that would not fit `config.max_memory`
    or the free disk is refused. At the end the type is resolved again for the exact count.

    The encoder runs where `config.encoding` says (device, precision, batches), or in a pool of
    Ray actors with `config.ray`; either way chunks are written in order by this process, so the
    index and its resumption are the same. `encoder`, if given, is used in this process.
    """
    started = time.perf_counter()
    check_name(out, "index folder", "choose a name in UTF-8")  # DuckDB and FAISS open only UTF-8 paths
    posts_in = Corpus(corpus, config.reader)
    if all(file.path.stat().st_size == 0 for file in posts_in.files):
        raise HiclError(nothing_indexed(0, Counter()))
    if posts_in.skipped_summary():
        announce(posts_in.skipped_summary())
    native.set_threads(config.threads)
    tick = time.perf_counter()
    encoding = open_encoding(config.encoder, config.encoding, config.ray, encoder=encoder)
    try:
        return _build(posts_in, Path(out), config, encoding, started, time.perf_counter() - tick, announce)
    finally:
        encoding.close()


def _build(posts_in: Corpus, out: Path, config: BuildConfig, encoder: Encoding, started: float,
           load_seconds: float, announce: Callable[[str], None]) -> BuildReport:
    estimated = posts_in.estimated_records()
    plan = plan_for(config.faiss_factory, estimated, encoder, config)
    announce(f"plan: {plan.describe()}")
    check_fits(plan, max_memory=config.max_memory, free_disk=free_disk(Path(out)))
    check_trainable(plan.factory, estimated, about=True)  # surely too few posts: refused before any encoding
    folder_existed = Path(out).is_dir()
    directory, resuming = IndexDir.for_build(out, _build_state(posts_in, encoder, config), overwrite=config.overwrite)
    with SegmentWriter(directory, BUILD_SEGMENT, dim=encoder.dim, first_id=0,
                       hashtag_rule=config.hashtag_rule) as writer:
        last = writer.last
        report = BuildReport.from_stats(json.loads(last.stats)) if last else BuildReport()
        report.index, report.load_seconds, report.resumed = directory.path, load_seconds, resuming
        report.encoded_on = encoder.where
        earlier_seconds = report.seconds
        if resuming:
            LOG.info("resuming %s after %d records (%d posts)", directory.path, last.records if last else 0,
                     writer.next_id)
        with tqdm(desc="reading and encoding", unit=" records", initial=last.records if last else 0,
                  total=max(estimated, 1), disable=not config.progress) as bar:
            records = itertools.islice(posts_in, last.records if last else 0, None)
            chunks = () if writer.finished else (_split(chunk) for chunk in record_chunks(records, config.chunk_size))
            encoded = encoder.encoded(chunks, lambda chunk: [post.text for post in chunk[1]], progress=bar)
            for (chunk, posts, rejects), vectors in _waited_for(encoded, report):
                report.rejected.update(reject.reason for reject in rejects)
                for post in posts:
                    report.notes.update(post.notes)
                report.read += len(chunk)
                advance(bar, len(chunk) - len(posts))
                report.seconds = earlier_seconds + time.perf_counter() - started
                writer.commit(posts, vectors, rejects, records=report.read, stats=json.dumps(report.as_dict()))
            if not writer.finished:
                repeated = writer.repeated_post_ids()
                report.duplicates = len(repeated)
                writer.finish(repeated, records=report.read, stats=json.dumps(report.as_dict()))
        report.indexed = writer.store.count()
        report.repeated_texts = writer.store.repeated_texts()
        report.warnings = posts_in.time_warnings
        if report.indexed == 0:
            writer.close()
            message = nothing_indexed(report.read, report.rejected, directory.file(REJECTS))
            directory.discard(keep_folder=folder_existed)  # nothing worth resuming; a rerun starts clean
            raise HiclError(message)
        plan = plan_for(config.faiss_factory, report.indexed, encoder, config)
        check_fits(plan, max_memory=config.max_memory)  # the disk is mostly written by now
        check_trainable(plan.factory, report.indexed, advice=f"the encoded posts stay in {directory.path}: rerun "
                        "the build with --index {fitting} (or --index auto) to finish it without encoding again")
        ids = writer.store.ids()
        trained = trained_index(writer.vectors(), ids, plan.factory, encoder.dim)
        write_trained(directory, trained, BUILD_TRAINED)
        segment = writer.seal(trained, ids)
    manifest = Manifest(
        encoder=encoder.config, model_revision=encoder.revision, dim=encoder.dim, faiss_factory=plan.factory,
        count=0, next_id=0, trained_file=BUILD_TRAINED, k_factor=plan.k_factor, hashtag_rule=config.hashtag_rule,
    ).with_segment(segment)
    index = directory.open_faiss(manifest, mmap=False)
    manifest = tuned_manifest(manifest, index, directory.open_vectors(manifest), ids, config.target_recall)
    report.seconds = earlier_seconds + time.perf_counter() - started
    directory.commit(dataclasses.replace(manifest, stats=report.as_dict()))
    return report
