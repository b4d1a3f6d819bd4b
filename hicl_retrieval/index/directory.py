"""One index directory: manifest, vectors, FAISS index, post store, opened and committed here.

Layout::

    IDX/manifest.json   what the index is (format version, encoder, counts, files); written
                        last and atomically, so a directory without it is never an index
    IDX/vectors.f16     every encoded vector, float16, row = post id (for re-ranking and
                        rebuilding the FAISS index without re-encoding)
    IDX/faiss.index     the FAISS index, ids = post ids
    IDX/posts.duckdb    the ``posts`` table (see store.py)
    IDX/rejects.jsonl   rows of the corpus that were not indexed: source, line, reason
    IDX/build.json      only while a build is unfinished: its inputs and settings, so that
                        rerunning it resumes where it stopped

`add`, `delete` and `compact` never change a file a reader may have open, except by appending
past what the manifest covers: they write new generations (``posts.<n>.duckdb``,
``faiss.<n>.index``, ``vectors.<n>.f16``) and switch to them by rewriting the manifest.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..core.atomic import write_json
from ..core.config import EncoderConfig
from ..core.errors import HiclError
from .checksums import BLOCK_BYTES, block_digests, damaged_ranges
from .faiss_index import VectorIndex
from .store import PostStore

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
VECTORS = "vectors.f16"
FAISS_INDEX = "faiss.index"
STORE = "posts.duckdb"
REJECTS = "rejects.jsonl"
BUILD_STATE = "build.json"
WRITE_LOCK = "write.lock"
_INDEX_FILE = re.compile(
    r"^(manifest\.json|build\.json|rejects\.jsonl|write\.lock|posts(\.\d+)?\.duckdb|vectors(\.\d+)?\.f16"
    r"|faiss(\.\d+)?\.index)(\.wal|\.tmp)?$"
)


@dataclass(frozen=True)
class Manifest:
    encoder: EncoderConfig
    dim: int
    faiss_factory: str
    count: int
    """Posts in the index."""
    vector_rows: int
    """Rows of vectors.f16; ids run from 0 to vector_rows - 1, with gaps for dropped duplicates."""
    model_revision: str | None = None
    faiss_file: str = FAISS_INDEX
    """The FAISS index file; `reindex` writes a new one and switches by rewriting the manifest."""
    k_factor: int = 1
    """Candidates per hit re-ranked exactly from vectors.f16 (above 1 for compressed indexes)."""
    search_params: dict[str, int] = field(default_factory=dict)
    """FAISS search parameters set on opening (``nprobe``, ``efSearch``), as tuned at build time."""
    tuning: dict[str, Any] = field(default_factory=dict)
    """How `search_params` were chosen: target and reached recall@10 against exact search."""
    store_file: str = STORE
    vectors_file: str = VECTORS
    hashtag_rule: str = "hicl"
    """How the posts' hashtags were extracted (text.py); indexes without the field used the HICL rule."""
    stats: dict[str, Any] = field(default_factory=dict)
    files: dict[str, int] = field(default_factory=dict)
    """Size in bytes of each file, checked on open to catch truncated copies."""
    checksums: dict[str, list[str]] = field(default_factory=dict)
    """SHA-256 of each `checksum_block` bytes of each file, checked by `verify` (see checksums.py);
    empty for indexes written before checksums were recorded."""
    checksum_block: int = BLOCK_BYTES
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    library_version: str = ""
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["encoder"] = self.encoder.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        data = dict(data)
        data["encoder"] = EncoderConfig.from_dict(data["encoder"], where="manifest encoder")
        return cls(**data)


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

        The sizes and block checksums of the files are recorded; a file the previous manifest
        (`manifest` was made from it) already covered rehashes only what was appended to it.
        """
        names = (manifest.vectors_file, manifest.store_file, REJECTS, manifest.faiss_file)
        files, checksums = {}, {}
        for name in names:
            if self.file(name).exists():
                files[name] = self.file(name).stat().st_size
                checksums[name] = block_digests(self.file(name), files[name], manifest.checksums.get(name),
                                                manifest.files.get(name, 0), manifest.checksum_block)
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
            raise HiclError(
                f"{self.file(name)} is damaged: {len(ranges)} of its blocks differ from the checksums the manifest "
                f"recorded (from byte {ranges[0][0]}); run `hicl-retrieval verify {self.path}`"
            )

    def size_problem(self, manifest: Manifest, name: str) -> str | None:
        """How the size of the file `name` differs from the manifest's record, or None.

        The append-only files (vectors, rejects) may be longer: a change appends past what the
        manifest covers before it switches.
        """
        size = manifest.files[name]
        actual = self.file(name).stat().st_size if self.file(name).exists() else None
        if actual == size or (name in (manifest.vectors_file, REJECTS) and actual and actual > size):
            return None
        return "is missing" if actual is None else f"has {actual} bytes, the manifest says {size}"

    def read_manifest(self, *, check_sizes: bool = True, except_faiss: bool = False) -> Manifest:
        """The manifest, checked against this library and (`check_sizes`) the sizes of the files on disk.

        `except_faiss` leaves the FAISS file unchecked, for `reindex`, which replaces it.
        """
        if not self.path.is_dir():
            what = "is a file, not an index directory" if self.path.exists() else "does not exist"
            raise HiclError(f"no index at {self.path}: it {what}")
        path = self.file(MANIFEST)
        if not path.is_file():
            raise HiclError(self._not_an_index())
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            version = data.get("format_version")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
            raise HiclError(f"{path} is damaged ({exc}); rebuild the index") from None
        if version != FORMAT_VERSION:
            raise HiclError(
                f"{self.path} has index format {version}, this version of hicl-retrieval reads "
                f"format {FORMAT_VERSION}; rebuild the index with this version"
            )
        try:
            manifest = Manifest.from_dict(data)
        except (TypeError, KeyError) as exc:
            raise HiclError(f"{path} is damaged ({exc}); rebuild the index") from None
        for name in manifest.files if check_sizes else ():
            problem = None if except_faiss and name == manifest.faiss_file else self.size_problem(manifest, name)
            if problem and name == manifest.faiss_file:
                raise HiclError(f"{self.file(name)} {problem}: rebuild it from the stored vectors with "
                                f"`hicl-retrieval reindex {self.path} --index {manifest.faiss_factory}`")
            if problem:
                raise HiclError(f"{self.file(name)} {problem}: the index is incomplete or damaged; rebuild it")
        return manifest

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

    def open_store(self, *, read_only: bool, name: str = STORE) -> PostStore:
        return PostStore(self.file(name), read_only=read_only)

    def open_faiss(self, manifest: Manifest, *, mmap: bool | None = None) -> VectorIndex:
        """The FAISS index with its tuned search parameters; an IVF index's lists memory-mapped by default."""
        if mmap is None:
            mmap = "IVF" in manifest.faiss_factory
        return VectorIndex.load(self.file(manifest.faiss_file), mmap=mmap, search_params=manifest.search_params)

    def open_vectors(self, manifest: Manifest) -> np.ndarray:
        """vectors.f16 memory-mapped, shape (vector_rows, dim)."""
        if manifest.vector_rows == 0:
            return np.zeros((0, manifest.dim), dtype=np.float16)
        return np.memmap(self.file(manifest.vectors_file), dtype=np.float16, mode="r", shape=(manifest.vector_rows, manifest.dim))
