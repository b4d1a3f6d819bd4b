"""A segment's post rows beside its DuckDB store, for a search's hits: read by id in a time that does not grow.

DuckDB is columnar: a lookup of a row decodes a vector of 2,048 values of every column the row
lives in, so 40 hits cost 5-8 ms however they are asked for (scripts/bench_lookups.py), and more
as the store grows. A search needs whole rows by id, so each sealed segment also keeps them
row-wise: ``seg-X.rows`` holds the rows in the order of the segment's vector ids, msgpack-encoded
(msgspec), and ``seg-X.rows.offsets.npy`` where each begins (a post the build dropped for its
repeated post id has an empty slice). Both are memory-mapped; 40 whole rows take 0.41 ms at
154,000 posts and 0.60 ms at 10,000,000 with the files in the page cache (reading the bytes is
0.03-0.08 ms of it, most of the rest extracting their hashtags, as the store's fetch does too; the
growth is the first touch of each page of a large mapping). The store stays the truth for
everything else (filters, exports, changes); these files are written once, at sealing, from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from ..core.atomic import save_array, synced
from ..core.errors import IndexDamaged
from ..core.text import extract_hashtags
from .segments import is_contiguous, row_numbers
from .store import PostRow, PostStore

_EPOCH = datetime(1970, 1, 1)
_COLUMNS = ("id", "post_id", "text", "author", "created_at", "retweet_of", "dup_key", "source", "line")
"""What a row keeps: a post row less its hashtags, which come from the text by the index's rule."""


def offsets_file(rows_file: str) -> str:
    """The file of the offsets of the rows file `rows_file`."""
    return f"{rows_file}.offsets.npy"


def write_rows(store: PostStore, vector_ids: np.ndarray, path: Path) -> list[str]:
    """The rows of `store` in the order of `vector_ids` (ascending) to `path`, their offsets beside it, synced;
    the post ids of the rows (those that have one), read in the same pass for the post-id hashes."""
    import msgspec

    encode = msgspec.msgpack.Encoder().encode
    offsets = np.zeros(len(vector_ids) + 1, dtype=np.int64)
    cursor = store.con.execute(f"SELECT {', '.join(_COLUMNS)} FROM posts ORDER BY id")
    position = row_number = 0
    post_ids = []
    with open(path, "wb") as out:
        while batch := cursor.fetchmany(65_536):
            for row in batch:
                while vector_ids[row_number] != row[0]:  # a dropped post: an empty slice
                    row_number += 1
                    offsets[row_number] = position
                when = row[4]
                data = encode((*row[:4], None if when is None else (when - _EPOCH) // timedelta(microseconds=1),
                               *row[5:]))
                out.write(data)
                position += len(data)
                if row[1] is not None:
                    post_ids.append(row[1])
                row_number += 1
                offsets[row_number] = position
        offsets[row_number + 1:] = position
        synced(out)
    save_array(path.with_name(offsets_file(path.name)), offsets)
    return post_ids


class HitRows:
    """The rows of several segments, by id, less the `deleted` ids: `PostStore.fetch` without DuckDB."""

    def __init__(self, parts: Sequence[tuple[np.ndarray, Path]], deleted: np.ndarray, hashtag_rule: str) -> None:
        """`parts`: (vector ids ascending, rows file) of each segment, in id order."""
        import msgspec

        self.parts = []
        self.folder = parts[0][1].parent if parts else Path()
        for ids, path in parts:
            if len(ids):
                offsets = np.load(path.with_name(offsets_file(path.name)), mmap_mode="r")
                data = np.memmap(path, dtype=np.uint8, mode="r") if path.stat().st_size else np.zeros(0, np.uint8)
                # plain views: slicing a np.memmap or an array costs more than decoding the row
                self.parts.append((np.asarray(ids), np.asarray(offsets), memoryview(np.asarray(data))))
        self.contiguous = [is_contiguous(ids) for ids, _, _ in self.parts]
        self.starts = np.array([ids[0] for ids, _, _ in self.parts], dtype=np.int64)
        self.deleted = np.sort(np.asarray(deleted, dtype=np.int64))
        self.hashtag_rule = hashtag_rule
        self.decode = msgspec.msgpack.Decoder().decode

    def fetch(self, ids: Sequence[int]) -> dict[int, PostRow]:
        """Rows by id; ids of no post, or deleted, are absent from the result. A row that cannot be read is
        damage, said in one line."""
        import msgspec

        try:
            return self._fetch(ids)
        except (msgspec.DecodeError, ValueError, IndexError, TypeError, OverflowError) as exc:
            raise IndexDamaged(f"the post rows of {self.folder} cannot be read ({exc}): a file is damaged; "
                               f"run `hicl-retrieval verify {self.folder}`") from None

    def _fetch(self, ids: Sequence[int]) -> dict[int, PostRow]:
        found: dict[int, PostRow] = {}
        ids = np.asarray(ids, dtype=np.int64)
        if not len(self.parts) or not len(ids):
            return found
        if len(self.deleted):
            ids = ids[~np.isin(ids, self.deleted)]
        segments = np.searchsorted(self.starts, ids, side="right") - 1
        for number in np.unique(segments[segments >= 0]):
            wanted = ids[segments == number]
            segment_ids, offsets, data = self.parts[number]
            rows, inside = row_numbers(segment_ids, self.contiguous[number], wanted)
            begins, ends = offsets[rows], offsets[rows + 1]
            held = inside & (begins != ends)  # a dropped post's slice is empty
            for post, begin, end in zip(wanted[held].tolist(), begins[held].tolist(), ends[held].tolist()):
                values = self.decode(data[begin:end])
                when = values[4]
                created = None if when is None else _EPOCH + timedelta(microseconds=when)
                found[post] = PostRow(values[0], values[1], values[2], extract_hashtags(values[2], self.hashtag_rule),
                                      values[3], created, *values[5:])
        return found
