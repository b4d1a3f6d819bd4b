"""What the one-process build and the parallel build share: their report, their plan, the state a
resumption must match, and the last step that trains FAISS over the written segments and commits."""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.config import BuildConfig
from ..corpus import Corpus, Post, Reject
from ..encoding.pools import Encoding
from ..index.directory import IndexDir
from ..index.faiss_index import VectorIndex, default_k_factor, effective_factory, trained_index
from ..index.manifest import REJECTS, Manifest, Segment
from ..index.planning import IndexPlan, check_fits, check_trainable, factory_for, plan_index
from ..index.segments import SegmentVectors
from ..index.tuning import tuned_manifest
from ..index.writer import write_trained

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
    stages: dict[str, float] = field(default_factory=dict)
    """Seconds of this run's stages after reading (a parallel build's: its workers' shards, dropping repeated post
    ids, merging rejects, training FAISS, sealing the segments; every build's tuning)."""

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
            "stages": {stage: round(seconds, 3) for stage, seconds in self.stages.items()},
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


def build_state(posts_in: Corpus, encoder: Encoding, config: BuildConfig) -> dict:
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


def split(chunk: list) -> tuple[list, list[Post], list[Reject]]:
    """(the chunk, its posts, its rejects)."""
    return chunk, [r for r in chunk if isinstance(r, Post)], [r for r in chunk if isinstance(r, Reject)]


def waited_for(items: Iterator, report: BuildReport) -> Iterator:
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


def trained_for(directory: IndexDir, vectors: SegmentVectors, ids: np.ndarray, encoder: Encoding,
                config: BuildConfig) -> tuple[IndexPlan, VectorIndex]:
    """The index type for the posts `ids` (resolved again for their exact count) and its trained, empty
    index, saved as the build's trained file."""
    plan = plan_for(config.faiss_factory, len(ids), encoder, config)
    check_fits(plan, max_memory=config.max_memory)  # the disk is mostly written by now
    check_trainable(plan.factory, len(ids), advice=f"the encoded posts stay in {directory.path}: rerun "
                    "the build with --index {fitting} (or --index auto) to finish it without encoding again")
    trained = trained_index(vectors, ids, plan.factory, encoder.dim)
    write_trained(directory, trained, BUILD_TRAINED)
    return plan, trained


def commit_index(directory: IndexDir, segments: Sequence[Segment], ids: np.ndarray, plan: IndexPlan,
                 trained: VectorIndex, encoder: Encoding, config: BuildConfig, report: BuildReport,
                 seconds) -> Manifest:
    """Name the sealed `segments` (holding the posts `ids`) in a manifest, tune the search to the target
    recall (where the `trained` index's type has a parameter to tune), and commit: the index exists from here
    on. `seconds()` is the build's time so far. Returns the manifest committed."""
    manifest = Manifest(
        encoder=encoder.config, model_revision=encoder.revision, dim=encoder.dim, faiss_factory=plan.factory,
        count=0, next_id=0, trained_file=BUILD_TRAINED, k_factor=plan.k_factor, hashtag_rule=config.hashtag_rule,
    )
    for segment in segments:
        manifest = manifest.with_segment(segment)
    if trained.tunable() is not None:  # an exact index has nothing to tune: not even worth opening
        tick = time.perf_counter()
        index = directory.open_faiss(manifest, mmap=False)
        manifest = tuned_manifest(manifest, index, directory.open_vectors(manifest), ids, config.target_recall)
        report.stages["tune"] = time.perf_counter() - tick
    report.seconds = seconds()
    manifest = dataclasses.replace(manifest, stats=report.as_dict())
    directory.commit(manifest)
    return manifest
