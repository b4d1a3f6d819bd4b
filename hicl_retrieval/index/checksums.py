"""Checksums of index files: SHA-256 of each 64 MiB block, so an appended file rehashes only its tail.

The manifest records, for every file it names, the digests of the blocks of the bytes it covers.
Files are immutable (segments) or append-only (rejects.jsonl), so a commit reuses the digests
of the blocks a previous manifest already covered and hashes only what is new; `damaged_ranges`
rereads everything and names the byte ranges that no longer match.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

BLOCK_BYTES = 1 << 26
_READ = 1 << 22


def _block_digest(handle, start: int, end: int) -> str:
    handle.seek(start)
    digest = hashlib.sha256()
    remaining = end - start
    while remaining:
        piece = handle.read(min(_READ, remaining))
        if not piece:
            break  # the file is shorter than it should be: the digest will not match
        digest.update(piece)
        remaining -= len(piece)
    return digest.hexdigest()


def block_digests(path: Path, size: int, previous: list[str] | None = None, previous_size: int = 0,
                  block: int = BLOCK_BYTES) -> list[str]:
    """Digests of the blocks of the first `size` bytes of `path`.

    `previous`, the digests of the first `previous_size` bytes of the same append-only file,
    are reused for the blocks they cover whole; only the rest is read.
    """
    kept = list(previous or [])[: min(previous_size, size) // block] if previous_size <= size else []
    with open(path, "rb") as handle:
        for start in range(len(kept) * block, size, block):
            kept.append(_block_digest(handle, start, min(start + block, size)))
    return kept


def damaged_ranges(path: Path, size: int, expected: list[str], block: int = BLOCK_BYTES) -> list[tuple[int, int]]:
    """Byte ranges [start, end) of `path` whose digests differ from `expected`."""
    found = block_digests(path, size, block=block)
    ranges = []
    for number, (want, have) in enumerate(zip(expected, found)):
        if want != have:
            ranges.append((number * block, min((number + 1) * block, size)))
    if len(found) != len(expected):
        ranges.append((min(len(found), len(expected)) * block, size))
    return ranges
