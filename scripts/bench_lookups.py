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
- what a sealed segment keeps beside its store, written from it by the index's own code: rows by
  id from its row file (index/rows.py: msgpack rows in id order and their offsets, memory-mapped),
  and the post-id check in its sorted 64-bit BLAKE2b hashes of the post ids (index/post_ids.py;
  the ids whose hash is held are then confirmed in DuckDB: in an add, only posts already held
  come that far): within each one's bucket, as the index searches, and in all of them, as it
  searches a segment sealed before there were buckets.

These files are read through once before the timing, as a service that has been answering holds
them in the page cache (timed without, a lookup at 10M posts times the disk's random reads), and
their lookups are timed in turn among themselves, after DuckDB's: a search reads its rows after
FAISS, not after a scan of 10M post ids, which leaves the CPU's caches cold for whatever runs
next (at 10M posts, 40 rows took 1.4-1.9 ms p50 timed in turn with DuckDB's queries, 0.7-1.0 ms
after them). It prints p50 and min of each, and each one's p50 at the largest size against the smallest: a
lookup that does not grow with the index stays near 1x.

    python scripts/bench_lookups.py --sizes 154000 10000000
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
from timing import percentile, timed_in_turn

from hicl_retrieval.core.atomic import save_array
from hicl_retrieval.index.post_ids import PostIdHashes, bucket_starts, sorted_hashes
from hicl_retrieval.index.rows import HitRows, write_rows
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


def read_through(paths: list[Path]) -> None:
    """Read `paths` once, so that their pages are in the page cache."""
    for path in paths:
        with open(path, "rb") as handle:
            while handle.read(1 << 24):
                pass


def measure(path: Path, posts: int, repeats: int, rng: random.Random) -> dict[str, list[float]]:
    """Seconds of each lookup, `repeats` times: DuckDB's in turn, then the index files' in turn."""
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

    in_duckdb = {
        f"{ROWS} rows by id, today (semi-join)": lambda: store.fetch(ids()),
        f"{ROWS} rows by id, literal IN over the view": literal("posts"),
        f"{ROWS} rows by id, literal IN on the segment's table": literal("s0.posts"),
        "1 row by id (a DuckDB lookup's floor)": lambda: store.con.execute(
            f"SELECT {columns} FROM s0.posts WHERE id = ?", [ids()[0]]).fetchall(),
        f"post-id check of {POST_IDS + 24}, today (semi-join)": lambda: store.existing_post_ids(post_ids()),
        f"post-id check of {POST_IDS + 24}, ART index on post_id": indexed_check,
    }
    times = {name: values for name, (values, _) in timed_in_turn(in_duckdb, repeats).items()}
    with_index.close()

    vector_ids = np.arange(posts, dtype=np.int64)  # the index's own files, written as sealing writes them
    held = write_rows(store, vector_ids, path.with_suffix(".rows"))
    store.close()
    hashes_file, buckets_file = path.with_suffix(".postids.npy"), path.with_suffix(".postids.buckets.npy")
    hashes = sorted_hashes(held)
    del held  # 10M strings a reader does not hold
    save_array(hashes_file, hashes)
    save_array(buckets_file, bucket_starts(hashes))
    read_through([path.with_suffix(".rows"), path.with_suffix(".rows.offsets.npy"), hashes_file, buckets_file])
    rows = HitRows([(vector_ids, path.with_suffix(".rows"))], np.zeros(0, np.int64), "twitter")
    bucketed, whole = PostIdHashes([(hashes_file, buckets_file)]), PostIdHashes([(hashes_file, None)])
    in_files = {
        f"{ROWS} rows by id, the segment's row file (index/rows.py)": lambda: rows.fetch(ids()),
        f"post-id check of {POST_IDS + 24}, hashes in buckets (index/post_ids.py)": lambda: bucketed.maybe_held(
            post_ids()),
        f"post-id check of {POST_IDS + 24}, all the hashes searched": lambda: whole.maybe_held(post_ids()),
    }
    times.update({name: values for name, (values, _) in timed_in_turn(in_files, repeats).items()})
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
