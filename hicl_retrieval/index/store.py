"""Post metadata in DuckDB, keyed by the same integer id as the vectors: one file a segment."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import astuple, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import IndexDamaged
from ..core.text import extract_hashtags
from ..corpus import Post

SCHEMA = """
CREATE TABLE IF NOT EXISTS posts (
    id BIGINT PRIMARY KEY,
    post_id VARCHAR,            -- the id in the source dump, if it has one
    text VARCHAR NOT NULL,
    hashtags VARCHAR[] NOT NULL, -- lower-cased, with '#'
    author VARCHAR,
    created_at TIMESTAMP,       -- UTC
    retweet_of VARCHAR,         -- post_id of the original, for retweets the dump marks
    dup_key VARCHAR NOT NULL,   -- text.duplicate_key(text)
    source VARCHAR NOT NULL,    -- file the post came from
    line BIGINT NOT NULL        -- its line (row, for Parquet) in that file, from 1
)
"""
# One row per committed chunk of a build (and one, chunk -1, for its final de-duplication):
# how far the build got, so that an interrupted build resumes exactly there.
LEDGER_SCHEMA = """
CREATE TABLE IF NOT EXISTS build_ledger (
    chunk INTEGER PRIMARY KEY,
    records BIGINT NOT NULL,        -- corpus records consumed so far (posts and rejects)
    vector_rows BIGINT NOT NULL,    -- rows of the segment's vectors so far
    rejects_bytes BIGINT NOT NULL,  -- size of rejects.jsonl so far
    stats VARCHAR NOT NULL          -- the build report so far, JSON
)
"""
COLUMNS = ("id", "post_id", "text", "hashtags", "author", "created_at", "retweet_of", "dup_key", "source", "line")


def _damage_kinds() -> tuple[type[Exception], ...]:
    """DuckDB's errors for a file it cannot read (block checksums, torn pages), not for a bad query."""
    import duckdb

    return (duckdb.IOException, duckdb.SerializationException, duckdb.InternalException, duckdb.FatalException)


def _readable(method):
    """Turn DuckDB's report of a damaged database file into a one-line `HiclError` naming `verify`."""

    @functools.wraps(method)
    def guarded(self, *args, **kwargs):
        import duckdb

        try:
            return method(self, *args, **kwargs)
        except duckdb.Error as exc:
            if type(exc) is not duckdb.Error and not isinstance(exc, _damage_kinds()):
                raise
            raise IndexDamaged(f"the post store {self.path} is damaged ({str(exc).splitlines()[0]}); "
                            f"run `hicl-retrieval verify {self.path.parent}`") from None

    return guarded


@dataclass(frozen=True)
class PostRow:
    """One post as the store keeps it; `id` is its vector's id."""

    id: int
    post_id: str | None
    text: str
    hashtags: list[str]
    author: str | None
    created_at: datetime | None
    retweet_of: str | None
    dup_key: str
    source: str
    line: int


@dataclass(frozen=True)
class LedgerRow:
    """How far the writing of a segment got: a resumed build starts after the last one committed."""

    chunk: int
    """Chunk number; -1 for a build's final de-duplication."""
    records: int
    """Corpus records consumed so far (posts and rejects)."""
    vector_rows: int
    """Rows of the segment's vectors so far."""
    rejects_bytes: int
    """Size of rejects.jsonl so far."""
    stats: str
    """The build report so far, JSON."""


_ARROW_SCHEMA = None


def _arrow_schema():
    global _ARROW_SCHEMA
    if _ARROW_SCHEMA is None:
        import pyarrow as pa

        _ARROW_SCHEMA = pa.schema([
            ("id", pa.int64()), ("post_id", pa.string()), ("text", pa.string()),
            ("hashtags", pa.list_(pa.string())), ("author", pa.string()),
            ("created_at", pa.timestamp("us")), ("retweet_of", pa.string()),
            ("dup_key", pa.string()), ("source", pa.string()), ("line", pa.int64()),
        ])
    return _ARROW_SCHEMA


def _unopenable(path: Path, exc: Exception) -> IndexDamaged:
    return IndexDamaged(f"cannot open the post store {path}: {str(exc).splitlines()[0]}; "
                        f"run `hicl-retrieval verify {Path(path).parent}`")


class PostStore:
    """Posts in DuckDB, as one ``posts`` relation: one segment's file, or a view over an index's segments.

    Use as a context manager, or call `close`.
    """

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        """One segment's store; a writable one gets the tables if it has none."""
        import duckdb

        self.path = Path(path)
        self.hashtag_rule: str | None = None
        self.post_id_hashes = None
        try:
            self.con = duckdb.connect(str(path), read_only=read_only)
        except duckdb.Error as exc:
            raise _unopenable(path, exc) from None
        if not read_only:
            self.con.execute(SCHEMA)
            self.con.execute(LEDGER_SCHEMA)

    @classmethod
    def over(cls, paths: Sequence[Path], deleted: Any = (), hashtag_rule: str | None = None) -> PostStore:
        """The live posts of several segment stores (read only), less the ids `deleted`, as one ``posts`` view.

        With `hashtag_rule` (the index's), `fetch` extracts hashtags from the text (see there).
        """
        import duckdb

        store = cls.__new__(cls)
        store.path = Path(paths[0]).parent / "seg-*.duckdb"
        store.hashtag_rule = hashtag_rule
        store.post_id_hashes = None  # set by IndexDir.open_store where the segments keep them
        store.con = duckdb.connect(":memory:")
        parts = []
        for number, path in enumerate(paths):
            try:
                store.con.execute(f"ATTACH ? AS s{number} (READ_ONLY)", [str(path)])
            except duckdb.Error as exc:
                store.con.close()
                raise _unopenable(path, exc) from None
            parts.append(f"SELECT {', '.join(COLUMNS)} FROM s{number}.posts")
        union = " UNION ALL ".join(parts)
        if len(deleted):
            import pyarrow as pa

            store.con.execute("CREATE TEMP TABLE deleted (id BIGINT PRIMARY KEY)")
            store.con.register("deleted_ids", pa.table({"id": pa.array(deleted, pa.int64())}))
            store.con.execute("INSERT INTO deleted SELECT id FROM deleted_ids")
            store.con.unregister("deleted_ids")
            union = f"SELECT * FROM ({union}) WHERE id NOT IN (SELECT id FROM deleted)"
        store.con.execute(f"CREATE TEMP VIEW posts AS {union}")
        return store

    def __enter__(self) -> PostStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @_readable
    def commit_chunk(self, rows: Sequence[PostRow], ledger: LedgerRow, delete: Sequence[int] = ()) -> None:
        """In one transaction: append `rows`, delete the ids `delete`, record the ledger row."""
        self.con.execute("BEGIN TRANSACTION")
        try:
            self.insert(rows)
            self.delete(delete)
            self.con.execute("INSERT INTO build_ledger VALUES (?, ?, ?, ?, ?)", list(astuple(ledger)))
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise

    @_readable
    def ledger(self) -> list[LedgerRow]:
        """The committed chunks of the segment, in order (a build's final de-duplication, chunk -1, last)."""
        cursor = self.con.execute(
            "SELECT chunk, records, vector_rows, rejects_bytes, stats FROM build_ledger ORDER BY chunk < 0, chunk"
        )
        return [LedgerRow(*row) for row in cursor.fetchall()]

    @_readable
    def insert(self, rows: Sequence[PostRow]) -> None:
        if not rows:
            return
        import pyarrow as pa

        columns = {name: [getattr(row, name) for row in rows] for name in COLUMNS}
        self.con.register("incoming_posts", pa.table(columns, schema=_arrow_schema()))
        try:
            self.con.execute(f"INSERT INTO posts SELECT {', '.join(COLUMNS)} FROM incoming_posts")
        finally:
            self.con.unregister("incoming_posts")

    @_readable
    def read_every_block(self) -> None:
        """Read every column of every row of both tables: DuckDB checks the checksum of each block it reads."""
        self.con.execute(f"SELECT count(*), sum(hash({', '.join(COLUMNS)})) FROM posts").fetchone()
        self.con.execute(
            "SELECT count(*), sum(hash(chunk, records, vector_rows, rejects_bytes, stats)) FROM build_ledger"
        ).fetchone()

    @_readable
    def count(self) -> int:
        return int(self.con.execute("SELECT count(*) FROM posts").fetchone()[0])

    @_readable
    def ids(self) -> Any:
        """All ids, ascending, as a numpy array."""
        return self.con.execute("SELECT id FROM posts ORDER BY id").fetchnumpy()["id"]

    @_readable
    def posts_text(self) -> tuple[Any, list[str], list[list[str]]]:
        """(ids ascending as a numpy array, texts, hashtags) of every post: for corpus statistics and BM25."""
        columns = self.con.execute("SELECT id, text, hashtags FROM posts ORDER BY id").fetchnumpy()
        return columns["id"], list(columns["text"]), [list(tags) for tags in columns["hashtags"]]

    @_readable
    def tagged_posts(self) -> tuple[Any, list[list[str]]]:
        """(ids ascending as a numpy array, hashtags) of the posts that carry a hashtag: what `adapt` learns from,
        without reading every post's text."""
        columns = self.con.execute("SELECT id, hashtags FROM posts WHERE len(hashtags) > 0 ORDER BY id").fetchnumpy()
        return columns["id"], [list(tags) for tags in columns["hashtags"]]

    @_readable
    def texts(self, ids: Sequence[int]) -> list[str]:
        """The texts of the posts `ids` (each live), in that order."""
        found = dict(self.con.execute("SELECT id, text FROM posts WHERE id IN (SELECT unnest(?::BIGINT[]))",
                                      [list(map(int, ids))]).fetchall())
        return [found[int(post)] for post in ids]

    @_readable
    def fingerprint(self) -> tuple[int, int]:
        """(posts, an order-free hash of their texts): equal for stores that hold the same posts."""
        count, digest = self.con.execute("SELECT count(*), coalesce(sum(hash(text)), 0) FROM posts").fetchone()
        return int(count), int(digest)

    @_readable
    def fetch(self, ids: Sequence[int]) -> dict[int, PostRow]:
        """Rows by id; ids not in the store (or deleted) are absent from the result.

        A store opened with the index's hashtag rule extracts the hashtags from the text, as the
        writer extracted the stored ones, instead of reading them: DuckDB decodes every list of each row group
        a lookup touches, which made reading them most of a search's time (13 of 16 ms for 36
        rows of 154k).
        """
        if len(ids) == 0:
            return {}
        rule = self.hashtag_rule
        columns = COLUMNS if rule is None else tuple(c for c in COLUMNS if c != "hashtags")
        cursor = self.con.execute(
            f"SELECT {', '.join(columns)} FROM posts WHERE id IN (SELECT unnest(?::BIGINT[]))",
            [list(map(int, ids))],
        )
        if rule is None:
            return {row[0]: PostRow(*row) for row in cursor.fetchall()}
        return {row[0]: PostRow(*row[:3], extract_hashtags(row[2], rule), *row[3:])
                for row in cursor.fetchall()}

    @_readable
    def existing_post_ids(self, post_ids: Sequence[str]) -> set[str]:
        """Those of `post_ids` that posts in the store already have (asked of the store only for those whose hash
        its segments hold, where they keep their post ids' hashes: index/post_ids.py)."""
        if self.post_id_hashes is not None:
            post_ids = self.post_id_hashes.maybe_held(post_ids)
        if not post_ids:
            return set()
        cursor = self.con.execute(
            "SELECT DISTINCT post_id FROM posts WHERE post_id IN (SELECT unnest(?::VARCHAR[]))", [list(post_ids)]
        )
        return {row[0] for row in cursor.fetchall()}

    def unknown(self, posts: Sequence[Post], seen: set[str]) -> list[Post]:
        """`posts` less those whose post id the store holds or `seen` has (an earlier post of the same change);
        `seen` gains the post ids of those kept. A post without a post id is always kept."""
        known = seen | self.existing_post_ids([post.post_id for post in posts if post.post_id is not None])
        kept = []
        for post in posts:
            if post.post_id is not None:
                if post.post_id in known:
                    continue
                known.add(post.post_id)
                seen.add(post.post_id)
            kept.append(post)
        return kept

    @_readable
    def ids_of_post_ids(self, post_ids: Sequence[str]) -> Any:
        """Ids (ascending numpy array) of the posts with these post ids."""
        return self.con.execute(
            "SELECT id FROM posts WHERE post_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY id", [list(post_ids)]
        ).fetchnumpy()["id"]

    @_readable
    def copy_from(self, stores: Sequence[Path], deleted: Any = ()) -> None:
        """Append the posts of the segment `stores` less the ids `deleted`, in id order, ids kept."""
        import pyarrow as pa

        self.con.register("deleted_ids", pa.table({"id": pa.array(np.asarray(deleted, dtype=np.int64))}))
        try:
            for number, path in enumerate(stores):
                self.con.execute(f"ATTACH ? AS source{number} (READ_ONLY)", [str(path)])
            union = " UNION ALL ".join(f"SELECT {', '.join(COLUMNS)} FROM source{n}.posts" for n in range(len(stores)))
            self.con.execute(f"INSERT INTO posts SELECT * FROM ({union}) "
                             "WHERE id NOT IN (SELECT id FROM deleted_ids) ORDER BY id")
        finally:
            self.con.unregister("deleted_ids")
            for number in range(len(stores)):
                self.con.execute(f"DETACH DATABASE IF EXISTS source{number}")

    @_readable
    def matching_ids(self, where: str, params: list[Any]) -> Any:
        """Ids (ascending numpy array) of the posts meeting a filter's WHERE clause (filters.py)."""
        return self.con.execute(f"SELECT id FROM posts WHERE {where} ORDER BY id", params).fetchnumpy()["id"]

    @_readable
    def repeated_post_ids(self) -> list[tuple[int, str, str, int]]:
        """(id, post_id, source, line) of every post whose post_id an earlier post already has."""
        return self.con.execute(
            """
            SELECT id, post_id, source, line FROM (
                SELECT id, post_id, source, line,
                       row_number() OVER (PARTITION BY post_id ORDER BY id) AS copy
                FROM posts WHERE post_id IS NOT NULL
            ) WHERE copy > 1 ORDER BY id
            """
        ).fetchall()

    @_readable
    def repeated_texts(self) -> int:
        """How many posts repeat an earlier post's duplicate key (kept; dropped at query time)."""
        return int(self.con.execute(
            "SELECT count(*) - count(DISTINCT dup_key) FROM posts WHERE dup_key <> ''"
        ).fetchone()[0])

    @_readable
    def delete(self, ids: Sequence[int]) -> None:
        if len(ids):
            self.con.execute("DELETE FROM posts WHERE id IN (SELECT unnest(?::BIGINT[]))", [list(map(int, ids))])

    @_readable
    def checkpoint(self) -> None:
        self.con.execute("CHECKPOINT")

    def close(self) -> None:
        self.con.close()
