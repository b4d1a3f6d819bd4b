"""Check a whole index: every file against the manifest's sizes and checksums, then its contents.

Checksums catch any change of a byte since the manifest was written. The content checks also
cover indexes written before checksums were recorded: DuckDB reads every block of the post
store (verifying its own block checksums), the stored vectors must be finite unit vectors, and
the FAISS index must load, hold the right number of vectors and find stored posts near
themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.errors import HiclError
from ..index.directory import IndexDir
from ..index.manifest import REJECTS, Manifest, Segment
from ..index.segments import SegmentVectors
from ..index.store import PostStore

_ROWS = 65536
_NORM_SLACK = 0.01  # float16 rounding of a unit vector moves its norm by about 1e-3
_SELF_QUERIES = 64


@dataclass(frozen=True)
class Check:
    what: str
    ok: bool
    detail: str


@dataclass
class VerifyReport:
    index: Path
    manifest: Manifest
    checks: list[Check] = field(default_factory=list)

    @property
    def damaged(self) -> list[Check]:
        return [check for check in self.checks if not check.ok]

    def lines(self) -> list[str]:
        return [f"{'ok' if check.ok else 'DAMAGED':<8} {check.what}: {check.detail}" for check in self.checks]

    def advice(self) -> str:
        """What to do about the damage found."""
        manifest = self.manifest
        bad = {check.what.split()[0] for check in self.damaged}
        if all(name.endswith(".faiss") or name == "FAISS" for name in bad):
            return (f"the stored vectors and posts are intact: rebuild the FAISS index from them with "
                    f"`hicl-retrieval reindex {self.index} --index {manifest.faiss_factory}`")
        if bad <= {REJECTS}:
            return "only the list of rejected rows is damaged; searches are unaffected"
        if manifest.adapter and bad <= {manifest.adapter["file"], REJECTS}:
            return (f"only the topic adapter is damaged: remove it with `hicl-retrieval adapt {self.index} --remove` "
                    f"(queries then use the plain encoder), then learn it again with `hicl-retrieval adapt {self.index}`")
        return "build the index again from its corpus (build --overwrite)"


def verify_index(path: str | Path) -> VerifyReport:
    """Every check of the index at `path`; a damaged part is reported, never raised."""
    directory = IndexDir(path)
    manifest = directory.read_manifest(check_sizes=False)
    report = VerifyReport(directory.path, manifest)
    for name in manifest.files:
        report.checks.append(_file_check(directory, manifest, name))
    stored = [_store_check(directory, manifest, segment, report) for segment in manifest.segments]
    if all(ids is not None for ids in stored):
        sound = [_vectors_check(directory, manifest, segment, ids, report)
                 for segment, ids in zip(manifest.segments, stored)]
        try:
            deleted = directory.deleted_ids(manifest)
        except HiclError as exc:
            report.checks.append(Check("deletion records", False, _reason(exc)))
            return report
        _faiss_check(directory, manifest, np.setdiff1d(np.concatenate(sound), deleted), report)
    if manifest.adapter:
        report.checks.append(_adapter_check(directory, manifest))
    return report


def _reason(exc: HiclError) -> str:
    """The error without its advice to run verify, which is running."""
    return str(exc).split("; run `hicl-retrieval verify")[0]


def _file_check(directory: IndexDir, manifest: Manifest, name: str) -> Check:
    problem = directory.size_problem(manifest, name)
    if problem:
        return Check(name, False, problem)
    if name not in manifest.checksums:
        return Check(name, True, f"{manifest.files[name]} bytes as recorded; no checksums recorded "
                                 "(written by an earlier hicl-retrieval)")
    ranges = directory.damaged(manifest, name)
    blocks = len(manifest.checksums[name])
    if not blocks:
        return Check(name, True, "empty, as recorded")
    if ranges:
        shown = ", ".join(f"{start}-{end}" for start, end in ranges[:3])
        return Check(name, False, f"{len(ranges)} of {blocks} blocks differ from their SHA-256 (bytes {shown})")
    return Check(name, True, f"{manifest.files[name]} bytes, {blocks} SHA-256 block checksums match")


def _store_check(directory: IndexDir, manifest: Manifest, segment: Segment,
                 report: VerifyReport) -> np.ndarray | None:
    """Read every block of a segment's post store; the ids of its posts, or None if it cannot be read."""
    name = f"{segment.store_file} contents"
    try:
        with PostStore(directory.file(segment.store_file), read_only=True) as store:
            store.read_every_block()
            ids = store.ids()
    except HiclError as exc:
        report.checks.append(Check(name, False, _reason(exc)))
        return None
    if len(ids) != segment.posts:
        report.checks.append(Check(name, False, f"{len(ids)} posts, the manifest says {segment.posts}"))
    elif len(ids) and (ids.min() < segment.first_id or ids.max() > segment.last_id):
        report.checks.append(Check(name, False, f"post ids outside the segment's {segment.first_id}-{segment.last_id}"))
    else:
        report.checks.append(Check(name, True, f"{len(ids)} posts, every block readable"))
    return ids


def _vectors_check(directory: IndexDir, manifest: Manifest, segment: Segment, ids: np.ndarray,
                   report: VerifyReport) -> np.ndarray:
    """Check a segment's stored vectors of `ids`; the ids whose vectors are sound."""
    name = f"{segment.vectors_file} contents"
    try:
        vector_ids = directory.segment_ids(segment)
        vectors = SegmentVectors([(vector_ids, directory.vectors_file(segment.vectors_file, segment.rows,
                                                                       manifest.dim))], manifest.dim)
        missing = np.setdiff1d(ids, vector_ids)
    except (HiclError, OSError) as exc:
        report.checks.append(Check(name, False, f"its ids file cannot be read ({_reason(exc)})"))
        return ids[:0]
    if len(missing):
        report.checks.append(Check(name, False, f"{len(missing)} posts have no stored vector (the first: {missing[0]})"))
        return ids[:0]
    sound = np.zeros(len(ids), dtype=bool)
    for start in range(0, len(ids), _ROWS):
        rows = vectors[ids[start : start + _ROWS]].astype(np.float32)
        good = np.isfinite(rows).all(axis=1)
        if manifest.encoder.normalize_vectors:
            good &= np.abs(np.linalg.norm(np.where(np.isfinite(rows), rows, 0), axis=1) - 1) <= _NORM_SLACK
        sound[start : start + len(rows)] = good
    kind = "finite unit vectors" if manifest.encoder.normalize_vectors else "finite vectors"
    report.checks.append(Check(name, bool(sound.all()), f"{int(sound.sum())} of {len(ids)} posts have {kind}"))
    return ids[sound]


def _adapter_check(directory: IndexDir, manifest: Manifest) -> Check:
    """The topic adapter loads as two finite float32 arrays of the index's dimension (index/adapter.py)."""
    name = f"{manifest.adapter['file']} contents"
    try:
        adapter = directory.open_adapter(manifest)
    except HiclError as exc:
        return Check(name, False, _reason(exc))
    return Check(name, True, f"a rank {adapter.rank} map of {adapter.dim}-dimensional query vectors")


def _faiss_check(directory: IndexDir, manifest: Manifest, sound: np.ndarray, report: VerifyReport) -> None:
    """Load the FAISS parts as one index and search it for live posts whose stored vectors are `sound`:
    each must be near itself."""
    name = "FAISS index contents"
    try:
        index = directory.open_faiss(manifest, mmap=False)
    except HiclError as exc:
        report.checks.append(Check(name, False, _reason(exc)))
        return
    rows = sum(segment.rows for segment in manifest.segments)
    if index.dim != manifest.dim or not manifest.count <= index.size <= rows:
        report.checks.append(Check(name, False, f"{index.size} vectors of {index.dim} dimensions; expected "
                                                f"{manifest.count} to {rows} of {manifest.dim}"))
        return
    if not len(sound):
        report.checks.append(Check(name, not manifest.count, f"{index.size} vectors; no sound stored vector to search"))
        return
    sample = np.sort(np.random.default_rng(0).choice(sound, size=min(_SELF_QUERIES, len(sound)), replace=False))
    queries = directory.open_vectors(manifest)[sample].astype(np.float32)
    scores, found = index.search(queries, min(10, index.size))
    valid = found >= 0
    impossible = (~np.isfinite(scores[valid])).any() or (
        manifest.encoder.normalize_vectors and (np.abs(scores[valid]) > 1.1).any())
    # Found: itself, or a copy of it (retweets share a vector, and more than 10 copies tie).
    own = np.einsum("ij,ij->i", queries, queries)
    near = sum(int(post in row or top >= score - _NORM_SLACK)
               for post, row, top, score in zip(sample, found, scores[:, 0], own))
    ok = not impossible and near >= 0.9 * len(sample)
    detail = (f"{index.size} vectors in {len(manifest.segments)} segment parts; {near} of {len(sample)} stored posts "
              "found (or a copy) among their own 10 nearest" + ("; impossible scores" if impossible else ""))
    report.checks.append(Check(name, ok, detail))
