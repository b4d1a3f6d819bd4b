"""One change of an index at a time: the write lock, leftovers of interrupted changes, the switch.

A change writes new files only, then switches by committing a manifest that names them; the
files no manifest names (replaced segments, an interrupted change's output) are removed under
the lock, by the change that switches and by the next one. A reader that opened the index
before keeps its files (open files outlive their unlinking); one that opens it after sees the
change whole. Readers take no lock.
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..core.errors import HiclError
from .directory import _INDEX_FILE, IndexDir
from .manifest import MANIFEST, REJECTS, WRITE_LOCK, Manifest


def generation() -> int:
    """A number no earlier change of the index used (microseconds since the epoch), for new file names."""
    return time.time_ns() // 1000


@contextmanager
def locked(path: str | Path, read: Callable[[IndexDir], object]) -> Iterator[IndexDir]:
    """The index directory with the write lock held; `read` checks it is an index before a lock file is made."""
    directory = IndexDir(path)
    read(directory)
    with open(directory.file(WRITE_LOCK), "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise HiclError(
                f"another add, delete, compact or reindex is changing {directory.path}; retry when it ends"
            ) from None
        yield directory


@contextmanager
def writing(path: str | Path, *, except_faiss: bool = False) -> Iterator[tuple[IndexDir, Manifest]]:
    """The index and its manifest, with the write lock held and an earlier change's leftovers removed."""
    read = lambda directory: directory.read_manifest(except_faiss=except_faiss)  # noqa: E731
    with locked(path, read) as directory:
        manifest = directory.read_manifest(except_faiss=except_faiss)
        remove_unnamed(directory, {MANIFEST, WRITE_LOCK, *manifest.named_files()})
        yield directory, manifest


def remove_unnamed(directory: IndexDir, keep: set[str]) -> None:
    """Delete the index files not in `keep`: replaced ones, an interrupted change's output."""
    for file in directory.path.iterdir():
        if _INDEX_FILE.match(file.name) and file.name not in keep and file.name.split(".wal")[0] not in keep:
            file.unlink(missing_ok=True)


def switch(directory: IndexDir, manifest: Manifest) -> Manifest:
    """Commit `manifest` and remove what it no longer names; the manifest as read back."""
    directory.commit(manifest)
    remove_unnamed(directory, {MANIFEST, WRITE_LOCK, REJECTS, *manifest.named_files()})
    return directory.read_manifest()
