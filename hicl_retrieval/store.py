"""Post metadata in DuckDB, keyed by the same integer id as the vectors."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import HiclError

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
COLUMNS = ("id", "post_id", "text", "hashtags", "author", "created_at", "retweet_of", "dup_key", "source", "line")


class PostStore:
    """The ``posts`` table of one index directory."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        import duckdb

        try:
            self.con = duckdb.connect(str(path), read_only=read_only)
        except duckdb.Error as exc:
            raise HiclError(f"cannot open the post store {path}: {exc}") from None
        if not read_only:
            self.con.execute(SCHEMA)

    def insert(self, rows: dict[str, Sequence[Any]]) -> None:
        """Append rows given column-wise (every name of `COLUMNS`, equal lengths)."""
        import pyarrow as pa

        batch = pa.table(
            {name: rows[name] for name in COLUMNS},
            schema=pa.schema([
                ("id", pa.int64()), ("post_id", pa.string()), ("text", pa.string()),
                ("hashtags", pa.list_(pa.string())), ("author", pa.string()),
                ("created_at", pa.timestamp("us")), ("retweet_of", pa.string()),
                ("dup_key", pa.string()), ("source", pa.string()), ("line", pa.int64()),
            ]),
        )
        self.con.register("incoming_posts", batch)
        try:
            self.con.execute(f"INSERT INTO posts SELECT {', '.join(COLUMNS)} FROM incoming_posts")
        finally:
            self.con.unregister("incoming_posts")

    def count(self) -> int:
        return int(self.con.execute("SELECT count(*) FROM posts").fetchone()[0])

    def ids(self) -> Any:
        """All ids, ascending, as a numpy array."""
        return self.con.execute("SELECT id FROM posts ORDER BY id").fetchnumpy()["id"]

    def fetch(self, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """Rows by id; ids not in the table are absent from the result."""
        if len(ids) == 0:
            return {}
        cursor = self.con.execute(
            f"SELECT {', '.join(COLUMNS)} FROM posts WHERE id IN (SELECT unnest(?::BIGINT[]))",
            [list(map(int, ids))],
        )
        return {row[0]: dict(zip(COLUMNS, row)) for row in cursor.fetchall()}

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

    def repeated_texts(self) -> int:
        """How many posts repeat an earlier post's duplicate key (kept; dropped at query time)."""
        return int(self.con.execute(
            "SELECT count(*) - count(DISTINCT dup_key) FROM posts WHERE dup_key <> ''"
        ).fetchone()[0])

    def delete(self, ids: Sequence[int]) -> None:
        if len(ids):
            self.con.execute("DELETE FROM posts WHERE id IN (SELECT unnest(?::BIGINT[]))", [list(map(int, ids))])

    def checkpoint(self) -> None:
        self.con.execute("CHECKPOINT")

    def close(self) -> None:
        self.con.close()
