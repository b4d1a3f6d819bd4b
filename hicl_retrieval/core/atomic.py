"""Files replaced whole: a reader, or a run after a crash, sees the old file or the new one, never half."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def synced(handle) -> int:
    """Flush and fsync the open file `handle`; its size (where it stands)."""
    handle.flush()
    os.fsync(handle.fileno())
    return handle.tell()


def save_array(path: str | Path, array) -> None:
    """`array` as an .npy file at `path` (no pickle), synced."""
    import numpy as np

    with open(path, "wb") as handle:
        np.save(handle, array, allow_pickle=False)
        synced(handle)


def sync_folder(folder: Path) -> None:
    """fsync a directory, so that a rename or a new file in it survives a power cut."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` to write; when the block ends, it is synced and renamed over `path`.

    If the block raises, the temporary file is removed and `path` is untouched.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    sync_folder(path.parent)


def write_json(path: str | Path, data: Any) -> None:
    with replacing(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_jsonl(path: str | Path, rows: Iterable[Any]) -> None:
    with replacing(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
