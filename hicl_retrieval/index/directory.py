"""One index directory: its manifest and segment files, opened and committed here.

Layout::

    IDX/manifest.json         what the index is (manifest.py); written last and atomically, so a
                              directory without it is never an index and a reader sees a whole one
    IDX/seg-<n>.f16           a segment's vectors, float16, one row per id of seg-<n>.ids.npy
    IDX/seg-<n>.ids.npy       the segment's ids, ascending (int64)
    IDX/seg-<n>.duckdb        the segment's ``posts`` rows (store.py)
    IDX/seg-<n>[-<m>].faiss   the segment's part of the FAISS index, ids = post ids
    IDX/trained-<n>.faiss     the trained, empty FAISS index every part starts from
    IDX/del-<n>.npy           ids deleted by one `delete` (int64), skipped until `compact`
    IDX/rejects.jsonl         rows of the corpus that were not indexed: source, line, reason
    IDX/build.json            only while a build is unfinished: its inputs and settings, so that
                              rerunning it resumes where it stopped

Segment files are written once under new names and never changed; a change switches to them by
writing the manifest, and the files no manifest names are removed by the next change.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..core.atomic import write_json
from ..core.errors import HiclError, IndexDamaged
from .adapter import TopicAdapter
from .checksums import block_digests, damaged_ranges
from .faiss_index import VectorIndex
from .manifest import BUILD_STATE, FORMAT_VERSION, MANIFEST, REJECTS, Manifest, Segment
from .post_ids import PostIdHashes
from .rows import HitRows
from .segments import SegmentVectors, combined, merged
from .store import PostStore

_INDEX_FILE = re.compile(
    r"^(manifest\.json|build\.json|shards\.json|rejects\.jsonl|write\.lock"
    r"|seg-[\w-]+\.(f16|ids\.npy|duckdb|faiss|rejects\.jsonl|rows|rows\.offsets\.npy|postids\.npy|postids\.buckets\.npy)|del-\w+\.npy"
    r"|trained-\w+\.faiss|adapter-\w+\.npz|posts(\.\d+)?\.duckdb|vectors(\.\d+)?\.f16|faiss(\.\d+)?\.index)(\.wal|\.tmp)?$"
)
"""The files an index (or an unfinished change of one) may hold, format 1's among them."""


def _library_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("hicl-retrieval")
    except metadata.PackageNotFoundError:
        return "unknown"


class IndexDir:
    """Paths and life cycle of one index directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    @classmethod
    def for_build(cls, path: str | Path, state: dict[str, Any], *, overwrite: bool = False) -> tuple[IndexDir, bool]:
        """The directory to build into, and whether an unfinished build of the same `state` resumes there.

        A fresh or empty directory starts a build (its `state` is written first). A directory
        holding an unfinished build of the same corpus and settings resumes it; one of other
        settings, or a finished index, is replaced only with `overwrite`. The old manifest goes
        first, so an interrupted overwrite never leaves a valid-looking index.
        """
        directory = cls(path)
        if directory.path.exists() and not directory.path.is_dir():
            raise HiclError(f"{directory.path} exists and is not a directory")
        if directory.path.is_dir() and any(directory.path.iterdir()):
            strangers = sorted(p.name for p in directory.path.iterdir() if not _INDEX_FILE.match(p.name))
            if strangers:
                raise HiclError(
                    f"{directory.path} is not empty and holds files that are not part of an index "
                    f"({', '.join(strangers[:5])}); choose another --out"
                )
            unfinished = directory.read_build_state()
            if not overwrite:
                if directory.file(MANIFEST).exists():
                    raise HiclError(f"{directory.path} already holds an index; pass --overwrite to replace it")
                if unfinished == state:
                    return directory, True
                if unfinished is None:
                    raise HiclError(
                        f"{directory.path} holds index files but neither {MANIFEST} nor {BUILD_STATE} (they were "
                        "deleted or lost), so there is no build to resume; pass --overwrite to start over"
                    )
                differs = ", ".join(sorted(k for k in state if unfinished.get(k) != state[k]))
                raise HiclError(
                    f"{directory.path} holds an unfinished build with other inputs or settings ({differs}); "
                    "rerun it with the same ones to resume, or pass --overwrite to start over"
                )
            directory.file(MANIFEST).unlink(missing_ok=True)
            shutil.rmtree(directory.path)
        directory.path.mkdir(parents=True, exist_ok=True)
        write_json(directory.file(BUILD_STATE), state)
        return directory, False

    def discard(self, *, keep_folder: bool) -> None:
        """Remove the index files here (and the folder, unless `keep_folder`): a build with nothing to keep."""
        for file in self.path.iterdir():
            if _INDEX_FILE.match(file.name):
                file.unlink()
        if not keep_folder and not any(self.path.iterdir()):
            self.path.rmdir()

    def read_build_state(self) -> dict[str, Any] | None:
        """The settings of the build under way here, or None."""
        try:
            return json.loads(self.file(BUILD_STATE).read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return None

    def commit(self, manifest: Manifest) -> None:
        """Make `manifest` the index: written atomically after every file it names; no build state.

        The sizes and block checksums of the files are recorded. Files the previous manifest
        (`manifest` was made from it) covered keep their digests: segment files are immutable, and
        rejects.jsonl, which is append-only, rehashes only from its last whole block. A commit
        hashes what the change wrote, not the index.
        """
        files, checksums = {}, {}
        for name in manifest.named_files():
            if not self.file(name).exists():
                continue
            files[name] = size = self.file(name).stat().st_size
            known = manifest.checksums.get(name)
            if known is not None and manifest.files.get(name) == size:
                checksums[name] = known
            else:
                checksums[name] = block_digests(self.file(name), size, known, manifest.files.get(name, 0),
                                                manifest.checksum_block)
        data = {**manifest.to_dict(), "files": files, "checksums": checksums, "library_version": _library_version()}
        write_json(self.file(MANIFEST), data)
        self.file(BUILD_STATE).unlink(missing_ok=True)

    def damaged(self, manifest: Manifest, name: str) -> list[tuple[int, int]]:
        """Byte ranges of the file `name` that differ from the manifest's checksums (none recorded: none)."""
        if name not in manifest.checksums:
            return []
        return damaged_ranges(self.file(name), manifest.files[name], manifest.checksums[name], manifest.checksum_block)

    def check_intact(self, manifest: Manifest, name: str) -> None:
        """Refuse to read `name` when its checksums do not match: a change must not copy damage."""
        ranges = self.damaged(manifest, name)
        if ranges:
            raise IndexDamaged(
                f"{self.file(name)} is damaged: {len(ranges)} of its blocks differ from the checksums the manifest "
                f"recorded (from byte {ranges[0][0]}); run `hicl-retrieval verify {self.path}`"
            )

    def check_vectors(self, manifest: Manifest) -> None:
        """Refuse to read the stored vectors (and their ids) when damaged: a rebuild from them must not copy damage."""
        for segment in manifest.segments:
            self.check_intact(manifest, segment.vectors_file)
            self.check_intact(manifest, segment.ids_file)

    def size_problem(self, manifest: Manifest, name: str) -> str | None:
        """How the size of the file `name` differs from the manifest's record, or None.

        rejects.jsonl may be longer: a change appends to it before it switches.
        """
        size = manifest.files[name]
        actual = self.file(name).stat().st_size if self.file(name).exists() else None
        if actual == size or (name == REJECTS and actual and actual > size):
            return None
        return "is missing" if actual is None else f"has {actual} bytes, the manifest says {size}"

    def read_manifest(self, *, check_sizes: bool = True, except_faiss: bool = False) -> Manifest:
        """The manifest, checked against this library and (`check_sizes`) the sizes of the files on disk.

        `except_faiss` leaves the FAISS files unchecked, for `reindex`, which replaces them.
        """
        data = self.manifest_data()
        version = data.get("format_version")
        if version == 1:
            raise HiclError(
                f"{self.path} has index format 1 (one post store and FAISS file that every change rewrote); "
                f"convert it to format {FORMAT_VERSION} (segments) without re-encoding with "
                f"`hicl-retrieval compact {self.path}`"
            )
        if version != FORMAT_VERSION:
            raise HiclError(
                f"{self.path} has index format {version}, this version of hicl-retrieval reads "
                f"format {FORMAT_VERSION}; rebuild the index with this version"
            )
        try:
            manifest = Manifest.from_dict(data)
        except (TypeError, KeyError) as exc:
            raise IndexDamaged(f"{self.file(MANIFEST)} is damaged ({exc}); rebuild the index") from None
        for name in manifest.files if check_sizes else ():
            is_faiss = name.endswith(".faiss")
            problem = None if except_faiss and is_faiss else self.size_problem(manifest, name)
            if problem and is_faiss:
                raise IndexDamaged(f"{self.file(name)} {problem}: rebuild the FAISS index from the stored vectors with "
                                f"`hicl-retrieval reindex {self.path} --index {manifest.faiss_factory}`")
            if problem:
                raise IndexDamaged(f"{self.file(name)} {problem}: the index is incomplete or damaged; rebuild it")
        return manifest

    def format_version(self) -> int | None:
        """The format of the index here (1 for one that `compact` converts)."""
        return self.manifest_data().get("format_version")

    def manifest_data(self) -> dict[str, Any]:
        if not self.path.is_dir():
            what = "is a file, not an index directory" if self.path.exists() else "does not exist"
            raise HiclError(f"no index at {self.path}: it {what}")
        path = self.file(MANIFEST)
        if not path.is_file():
            raise HiclError(self._not_an_index())
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            data.get("format_version")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
            raise IndexDamaged(f"{path} is damaged ({exc}); rebuild the index") from None
        return data

    def _not_an_index(self) -> str:
        """What a directory without a manifest holds, and what to do about it."""
        names = sorted(p.name for p in self.path.iterdir())
        if not names:
            return f"{self.path} is an empty directory, not an index"
        if BUILD_STATE in names:
            return (f"{self.path} holds a build that did not finish (its {MANIFEST} is written last); rerun the "
                    "same `hicl-retrieval build` command to resume it, or build it again with --overwrite")
        if any(_INDEX_FILE.match(name) for name in names):
            return (f"{self.path} holds index files but no {MANIFEST} (it was deleted or lost), so it cannot be "
                    "opened as an index; build it again with --overwrite")
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        return f"{self.path} is not an index directory: it has no {MANIFEST} (it holds {shown})"

    def deleted_ids(self, manifest: Manifest) -> np.ndarray:
        """Every id the manifest's deletion records name, ascending."""
        if not manifest.deletions:
            return np.zeros(0, dtype=np.int64)
        return np.unique(np.concatenate([self._ids_file(d.file) for d in manifest.deletions]))

    def open_store(self, manifest: Manifest, deleted: np.ndarray | None = None) -> PostStore:
        """The live posts of every segment, read only, as one ``posts`` view (`deleted`: `deleted_ids`, if read);
        hits' hashtags come from their text by the index's rule (PostStore.fetch)."""
        deleted = self.deleted_ids(manifest) if deleted is None else deleted
        store = PostStore.over([self.file(s.store_file) for s in manifest.segments], deleted, manifest.hashtag_rule)
        if all(segment.post_ids_file for segment in manifest.segments):
            store.post_id_hashes = PostIdHashes([
                (self.file(s.post_ids_file), self.file(s.post_id_buckets_file) if s.post_id_buckets_file else None)
                for s in manifest.segments])
        return store

    def segment_ids(self, segment: Segment) -> np.ndarray:
        return self._ids_file(segment.ids_file, mmap_mode="r")

    def _ids_file(self, name: str, mmap_mode: str | None = None) -> np.ndarray:
        """The int64 ids of the .npy file `name`; a file that is not one is damage, said in one line."""
        try:
            ids = np.load(self.file(name), mmap_mode=mmap_mode, allow_pickle=False)
        except ValueError as exc:
            raise IndexDamaged(f"{self.file(name)} is damaged ({exc}); run `hicl-retrieval verify {self.path}`") from None
        if ids.dtype != np.int64 or ids.ndim != 1:
            raise IndexDamaged(f"{self.file(name)} is damaged (it holds {ids.dtype} of shape {ids.shape}, not ids); "
                            f"run `hicl-retrieval verify {self.path}`")
        return ids

    def vectors_file(self, name: str, rows: int, dim: int) -> np.ndarray:
        """The float16 vectors of the file `name`, memory-mapped, shape (rows, dim)."""
        if rows == 0:
            return np.zeros((0, dim), dtype=np.float16)
        return np.memmap(self.file(name), dtype=np.float16, mode="r", shape=(rows, dim))

    def open_rows(self, manifest: Manifest, deleted: np.ndarray) -> HitRows | None:
        """The segments' post rows by id for a search's hits (index/rows.py); None where a segment has none."""
        if not all(segment.rows_file for segment in manifest.segments):
            return None
        return HitRows([(self.segment_ids(s), self.file(s.rows_file)) for s in manifest.segments], deleted,
                       manifest.hashtag_rule)

    def open_vectors(self, manifest: Manifest) -> SegmentVectors:
        """Every stored vector (deleted posts' too, until `compact`), memory-mapped, indexed by id."""
        return SegmentVectors([(self.segment_ids(s), self.vectors_file(s.vectors_file, s.rows, manifest.dim))
                               for s in manifest.segments], manifest.dim)

    def open_adapter(self, manifest: Manifest) -> TopicAdapter | None:
        """The topic adapter queries go through (None: the plain encoder), refused when its file is damaged."""
        if not manifest.adapter:
            return None
        name = manifest.adapter["file"]
        self.check_intact(manifest, name)
        try:
            return TopicAdapter.load(self.file(name), manifest.dim)
        except HiclError as exc:
            raise IndexDamaged(f"{exc}; run `hicl-retrieval verify {self.path}`") from None

    def open_faiss(self, manifest: Manifest, *, mmap: bool | None = None,
                   deleted: np.ndarray | None = None) -> VectorIndex:
        """The segments' FAISS parts as one index with its tuned search parameters, skipping deleted ids.

        An IVF index's lists are memory-mapped by default.
        """
        if mmap is None:
            mmap = "IVF" in manifest.faiss_factory
        parts = [VectorIndex.load(self.file(s.faiss_file), mmap=mmap) for s in manifest.segments]
        if len(parts) == 1 and "IVF" not in manifest.faiss_factory:
            index = parts[0]
        elif parts and parts[0].is_fast_scan:  # each part keeps its quantizer: the trained index is not read
            try:
                index = merged(parts)
            except RuntimeError as exc:  # FAISS's refusal of parts that do not fit together
                reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
                raise IndexDamaged(f"the FAISS parts of {self.path} do not fit together ({reason}); "
                                   f"run `hicl-retrieval verify {self.path}`") from None
        else:  # IVF parts hold only their lists: they are searched under the trained index's quantizer
            index = combined(parts, VectorIndex.load(self.file(manifest.trained_file)))
        index.set_search_params(manifest.search_params)
        deleted = self.deleted_ids(manifest) if deleted is None else deleted
        index.excluded = deleted if len(deleted) else None
        return index
