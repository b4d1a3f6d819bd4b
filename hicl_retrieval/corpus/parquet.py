"""Parquet files, through DuckDB, a record batch at a time; a post's `line` is its row number from 1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..core.config import ReaderConfig
from ..core.errors import HiclError
from ..core.files import resolved
from .columns import Columns
from .lines import corrupt
from .records import BadRecord, Record, Reject, make_post


def parquet_columns(path: Path) -> list[str]:
    import duckdb

    try:
        relation = duckdb.connect().execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(path)])
        return [row[0] for row in relation.fetchall()]
    except duckdb.Error as exc:
        raise HiclError(f"{path}: not a readable Parquet file ({exc})") from None


def parquet_rows(path: Path) -> int:
    """Rows of the file, from its metadata."""
    import duckdb

    try:
        return int(duckdb.connect().execute(
            "SELECT sum(num_rows) FROM parquet_file_metadata(?)", [str(path)]).fetchone()[0] or 0)
    except duckdb.Error as exc:
        raise HiclError(f"{path}: not a readable Parquet file ({exc})") from None


def read_parquet(path: Path, config: ReaderConfig, batch_rows: int = 8192) -> Iterator[Record]:
    """Every row as a post or a reject; damage found while reading ends the file with ``corrupt_file``."""
    import duckdb
    import pyarrow

    source = resolved(path)
    columns = Columns.resolve(parquet_columns(path), config, source)
    con = duckdb.connect()
    next_line = 1
    try:
        # Only the path is a parameter; column names are picked from the batches by name,
        # so no user text ever becomes SQL.
        result = con.sql("SELECT * FROM read_parquet(?, file_row_number = true)", params=[source])
        batches = (
            result.to_arrow_reader(batch_rows)  # duckdb >= 1.4
            if hasattr(result, "to_arrow_reader")
            else result.fetch_arrow_reader(batch_rows)
        )
        for batch in batches:
            data = batch.to_pydict()
            for i, row_number in enumerate(data["file_row_number"]):
                fields = {
                    "text": data[columns.text][i],
                    "post_id": data[columns.id][i] if columns.id else None,
                    "author": data[columns.author][i] if columns.author else None,
                    "created_at": data[columns.time][i] if columns.time else None,
                    "retweet_of": data[columns.retweet][i] if columns.retweet else None,
                }
                next_line = row_number + 2
                try:
                    yield make_post(fields, source, row_number + 1, config.time_format)
                except BadRecord as bad:
                    yield Reject(source, row_number + 1, bad.reason, bad.detail)
    except (duckdb.Error, pyarrow.ArrowException, OSError) as exc:
        yield corrupt(source, next_line, exc)
    finally:
        con.close()
