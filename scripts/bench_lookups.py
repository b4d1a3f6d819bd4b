#!/usr/bin/env python3
"""How the post store's lookups grow with the index: a search's rows by id, and an add's post-id check.

For each of `--sizes`, one synthetic segment store of that many posts (the schema the writer
makes, texts of tweet length, post ids of 19 digits) is written once with DuckDB, then read as
an index reads it (`PostStore.over`, the view over segments). Timed, `--repeats` times each, in
turn:

- rows by id: 40 random ids, all columns, as a search's hits are fetched: today's query (a
  semi-join on `unnest` of a list parameter), a literal `IN` list over the view, and the same on
  the segment's table; and one id alone (the floor of a DuckDB lookup here);
- the post-id check of an add: 1,000 post ids of the store and 24 new ones, as
  `existing_post_ids` asks today (a semi-join), and with a literal `IN (?, ...)` list on a copy
  of the store that has an ART index on `post_id`;
- the candidates outside DuckDB, made here from the store: rows by id from a file of the rows
  (msgspec-encoded, in id order) and an array of their offsets, memory-mapped; the post-id check
  as a binary search (numpy `searchsorted`) in a sorted array of 64-bit BLAKE2b hashes of the
  post ids (a hash found is then confirmed in DuckDB: only posts already held come that far).

It prints p50 and min of each, and each one's p50 at the largest size against the smallest: a
lookup that does not grow with the index stays near 1x.

    python scripts/bench_lookups.py --sizes 154000 10000000
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
from timing import percentile, timed_in_turn

from hicl_retrieval.index.store import COLUMNS, SCHEMA, PostStore

ROWS = 40
POST_IDS = 1000
FIRST_POST_ID = 10**18


def write_store(path: Path, posts: int) -> None:
    """A segment store of `posts` synthetic posts, ids 0.., inserted a million at a time through Arrow."""
    import duckdb
    import pyarrow as pa

    con = duckdb.connect(str(path))
    con.execute(SCHEMA)
    for start in range(0, posts, 1_000_000):
        numbers = range(start, min(start + 1_000_000, posts))
        table = pa.table({
            "id": pa.array(numbers, pa.int64()),
            "post_id": pa.array([str(FIRST_POST_ID + i) for i in numbers]),
            "text": pa.array([f"post {i} on the flood downtown, the river is still rising #flood #yyc" for i in numbers]),
            "hashtags": pa.array([["#flood", "#yyc"]] * len(numbers), pa.list_(pa.string())),
            "author": pa.array([f"user{i % 50_000}" for i in numbers]),
            "created_at": pa.array([None] * len(numbers), pa.timestamp("us")),
            "retweet_of": pa.array([None] * len(numbers), pa.string()),
            "dup_key": pa.array([f"post {i} on the flood downtown the river is still rising flood yyc" for i in numbers]),
            "source": pa.array(["/data/posts.jsonl"] * len(numbers)),
            "line": pa.array([i + 1 for i in numbers], pa.int64()),
        })
        con.register("incoming", table)
        con.execute("INSERT INTO posts SELECT * FROM incoming")
        con.unregister("incoming")
    con.execute("CHECKPOINT")
    con.close()


def indexed_copy(path: Path) -> Path:
    """A copy of the store with an ART index on post_id."""
    import duckdb

    copy = path.with_name(path.stem + "-post-id-index.duckdb")
    shutil.copy(path, copy)
    con = duckdb.connect(str(copy))
    con.execute("CREATE INDEX post_ids ON posts (post_id)")
    con.execute("CHECKPOINT")
    con.close()
    return copy


def post_id_hash(post_ids) -> np.ndarray:
    """64-bit BLAKE2b hashes of post ids, as signed integers."""
    return np.array([int.from_bytes(hashlib.blake2b(post_id.encode(), digest_size=8).digest(), "little", signed=True)
                     for post_id in post_ids], dtype=np.int64)


class RowFile:
    """A segment's rows outside DuckDB: msgspec-encoded rows in id order and their offsets, memory-mapped."""

    def __init__(self, store: PostStore, folder: Path, columns: str) -> None:
        import msgspec

        encoder = msgspec.msgpack.Encoder()
        offsets, position = [0], 0
        with open(folder / "rows.bin", "wb") as out:
            cursor = store.con.execute(f"SELECT {columns} FROM s0.posts ORDER BY id")
            while batch := cursor.fetchmany(100_000):
                for row in batch:
                    data = encoder.encode(row[:4] + (None,) + row[5:])  # the time left out: msgpack has no datetime
                    out.write(data)
                    position += len(data)
                    offsets.append(position)
        np.save(folder / "offsets.npy", np.asarray(offsets, dtype=np.int64))
        self.offsets = np.load(folder / "offsets.npy", mmap_mode="r")
        self.data = np.memmap(folder / "rows.bin", dtype=np.uint8, mode="r")
        self.decoder = msgspec.msgpack.Decoder()

    def fetch(self, ids: list[int]) -> list:
        return [self.decoder.decode(self.data[self.offsets[i]:self.offsets[i + 1]]) for i in ids]


def measure(path: Path, posts: int, repeats: int, rng: random.Random) -> dict[str, list[float]]:
    """Seconds of each lookup, `repeats` times, in turn."""
    columns = ", ".join(column for column in COLUMNS if column != "hashtags")
    store = PostStore.over([path], hashtag_rule="twitter")
    with_index = PostStore.over([indexed_copy(path)])
    ids = lambda: sorted(rng.sample(range(posts), ROWS))  # noqa: E731
    post_ids = lambda: [str(FIRST_POST_ID + i) for i in rng.sample(range(posts), POST_IDS)] + [  # noqa: E731
        f"new-{rng.random()}" for _ in range(24)]

    def literal(table: str):
        return lambda: store.con.execute(
            f"SELECT {columns} FROM {table} WHERE id IN ({', '.join(map(str, ids()))})").fetchall()

    def indexed_check():
        wanted = post_ids()
        return with_index.con.execute(f"SELECT DISTINCT post_id FROM posts WHERE post_id IN "
                                      f"({', '.join('?' * len(wanted))})", wanted).fetchall()

    hashes = np.sort(post_id_hash(row[0] for row in store.con.execute("SELECT post_id FROM s0.posts").fetchall()))
    rows = RowFile(store, path.parent, columns)

    def hashed_check():
        wanted = post_id_hash(post_ids())
        found = np.minimum(np.searchsorted(hashes, wanted), len(hashes) - 1)
        return int((hashes[found] == wanted).sum())

    lookups = {
        f"{ROWS} rows by id, today (semi-join)": lambda: store.fetch(ids()),
        f"{ROWS} rows by id, literal IN over the view": literal("posts"),
        f"{ROWS} rows by id, literal IN on the segment's table": literal("s0.posts"),
        "1 row by id (a DuckDB lookup's floor)": lambda: store.con.execute(
            f"SELECT {columns} FROM s0.posts WHERE id = ?", [ids()[0]]).fetchall(),
        f"post-id check of {POST_IDS + 24}, today (semi-join)": lambda: store.existing_post_ids(post_ids()),
        f"post-id check of {POST_IDS + 24}, ART index on post_id": indexed_check,
        f"{ROWS} rows by id, a row file and offsets": lambda: rows.fetch(ids()),
        f"post-id check of {POST_IDS + 24}, sorted 64-bit hashes": hashed_check,
    }
    times = {name: values for name, (values, _) in timed_in_turn(lookups, repeats).items()}
    store.close()
    with_index.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[154_000, 10_000_000])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--work", type=Path, help="where the stores go (default: a temporary folder)")
    args = parser.parse_args()
    rng = random.Random(0)
    results = {}
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        for posts in args.sizes:
            path = Path(tmp) / f"seg-{posts}.duckdb"
            write_store(path, posts)
            results[posts] = measure(path, posts, args.repeats, rng)
            print(f"{posts:,} posts ({path.stat().st_size / 2**20:.0f} MiB):")
            for name, values in results[posts].items():
                ms = np.asarray(values) * 1e3
                print(f"  {name:<52} p50 {percentile(list(ms), 50):7.2f} ms, min {ms.min():7.2f} ms")
    small, large = min(args.sizes), max(args.sizes)
    if small != large:
        print(f"p50 at {large:,} against {small:,} posts:")
        for name in results[small]:
            print(f"  {name:<52} {percentile(results[large][name], 50) / percentile(results[small][name], 50):5.2f}x")


if __name__ == "__main__":
    main()
