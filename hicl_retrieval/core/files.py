"""Paths the user names: corpus sources as the index records them, and output files checked before work.

Python hands over the bytes of a name that are not UTF-8 (in argv, or listed from a folder) as
lone surrogates (``\\udcff``). DuckDB, FAISS and JSON take only UTF-8, and the index records
every source as text, so `check_name` refuses such a name in one line before any work.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from .errors import HiclError
from .text import check_unicode


def shown(path: str | Path | bytes) -> str:
    """`path` as messages print it: bytes that are not UTF-8 written as ``\\xff``, never as surrogates."""
    text = os.fsdecode(path)
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that stands for no byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def check_name(path: str | Path | bytes, what: str, advice: str = "rename it") -> str:
    """`path` as text, or a `HiclError` when UTF-8 cannot hold it (``the corpus file name ... is not valid UTF-8``)."""
    text = os.fsdecode(path)
    try:
        check_unicode(text, f"the {what} name {shown(text)}")
    except HiclError as exc:
        raise HiclError(f"{exc}; {advice}") from None
    return text


def resolved(path: str | Path) -> str:
    """`path` absolute and normalised (``~``, ``.``, ``..`` and symbolic links resolved).

    The index records every post's source this way, and a ``source`` filter resolves the path
    it is given the same way, so ``./train.jsonl``, ``train.jsonl`` and ``/data/train.jsonl``
    name the same file however the build and the query spelled it.
    """
    try:
        return str(Path(path).expanduser().resolve())
    except (OSError, ValueError):  # a name no file can have (a NUL, a loop of links): as written, made absolute
        return os.path.abspath(os.path.expanduser(str(path)))


def check_output(path: str | Path, *, inputs: Iterable[str | Path] = (), what: str = "output") -> Path:
    """`path` as a file the command may write: its folder exists, and it is none of the `inputs`.

    Checked before any work, so that a typo in ``--out`` costs nothing and an input is never
    overwritten by its own output.
    """
    check_name(path, f"{what} file", "choose a name in UTF-8")
    path = Path(path)
    if path.is_dir():
        raise HiclError(f"the {what} {path} is a directory; name a file")
    folder = path.parent
    if not folder.is_dir():
        raise HiclError(f"cannot write the {what} {path}: the folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK):
        raise HiclError(f"cannot write the {what} {path}: the folder {folder} is not writable")
    for source in inputs:
        if Path(source).exists() and Path(resolved(source)) == Path(resolved(path)):
            raise HiclError(f"the {what} {path} is the input file {source}; write to another file")
    return path


def text_lines(source: str | Path | BinaryIO, name: str | None = None) -> list[tuple[int, str]]:
    """(line number, line without its end) of a user's UTF-8 text file or binary stream.

    A line that is not UTF-8 is named with its number, in one line, instead of ending in a
    ``UnicodeDecodeError`` traceback.
    """
    if isinstance(source, (str, Path)):
        check_name(source, name or "file")
        path = Path(source)
        if not path.is_file():
            raise HiclError(f"{name or 'the file'} {path} does not exist")
        with open(path, "rb") as handle:
            return text_lines(handle, f"{name or 'the file'} {path}")
    lines = []
    for number, raw in enumerate(source, 1):
        try:
            lines.append((number, raw.decode("utf-8").rstrip("\r\n")))
        except UnicodeDecodeError as exc:
            raise HiclError(f"{name} line {number} is not valid UTF-8 (byte {exc.start + 1}); "
                            "save it as UTF-8") from None
    return lines
