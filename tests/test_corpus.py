import csv
import gzip
import json
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
import zstandard

from hicl_retrieval.core.config import ReaderConfig
from hicl_retrieval.core.errors import HiclError
from hicl_retrieval.core.times import parse_post_time as parse_time
from hicl_retrieval.corpus import Corpus, Post, Reject


def read_all(paths, **options):
    records = list(Corpus([str(p) for p in paths], ReaderConfig(**options)))
    posts = [r for r in records if isinstance(r, Post)]
    rejects = [r for r in records if isinstance(r, Reject)]
    return posts, rejects


V1_TWEET = {
    "created_at": "Wed Jun 19 20:19:24 +0000 2013",
    "id": 347686624563429378,
    "id_str": "347686624563429378",
    "text": "Canmore declares state of emergency… https://t.co/x",
    "truncated": True,
    "extended_tweet": {"full_text": "Canmore declares state of emergency due to flooding #abflood"},
    "user": {"screen_name": "CBCAlerts"},
}
V1_RETWEET = {
    "created_at": "Wed Jun 19 21:00:00 +0000 2013",
    "id_str": "347700000000000001",
    "text": "RT @CBCAlerts: Canmore declares state of emergency…",
    "user": {"screen_name": "someone"},
    "retweeted_status": V1_TWEET,
}
V2_RESPONSE = {
    "data": [
        {"id": "1500000000000000001", "text": "Smoke over the ridge again #wildfire", "author_id": "11",
         "created_at": "2024-07-01T10:00:00.000Z", "edit_history_tweet_ids": ["1500000000000000001"]},
        {"id": "1500000000000000002", "text": "RT @firecrew: Evacuate Pine Hollow now…", "author_id": "12",
         "created_at": "2024-07-01T11:00:00.000Z",
         "referenced_tweets": [{"type": "retweeted", "id": "1500000000000000000"}]},
    ],
    "includes": {
        "users": [{"id": "11", "username": "ridgewatch"}, {"id": "12", "username": "neighbour"},
                  {"id": "13", "username": "firecrew"}],
        "tweets": [{"id": "1500000000000000000", "author_id": "13",
                    "text": "Evacuate Pine Hollow now, the fire jumped the highway"}],
    },
}


def test_plain_text_one_post_a_line(tmp_path):
    path = tmp_path / "hash_database.txt"
    path.write_text("first post #one \nsecond post\n\nthird post", encoding="utf-8")
    posts, rejects = read_all([path])
    assert [(p.text, p.line) for p in posts] == [("first post #one", 1), ("second post", 2), ("third post", 4)]
    assert [(r.line, r.reason) for r in rejects] == [(3, "empty_text")]
    assert all(p.source == str(path) for p in posts)


@pytest.mark.parametrize("compress", ["gzip", "zstd", None])
def test_compressed_files_are_recognised_by_content(tmp_path, compress):
    payload = "\n".join(json.dumps({"id": str(i), "text": f"post number {i}"}) for i in range(1000)).encode()
    if compress == "gzip":
        payload = gzip.compress(payload)
    elif compress == "zstd":
        payload = zstandard.ZstdCompressor().compress(payload)
    path = tmp_path / "dump.jsonl"  # no compression suffix on purpose
    path.write_bytes(payload)
    posts, rejects = read_all([path])
    assert [p.post_id for p in posts] == [str(i) for i in range(1000)]
    assert rejects == []
    gz = tmp_path / "dump.jsonl.gz"
    gz.write_bytes(gzip.compress(b'{"text": "x"}\n'))
    assert [p.text for p in read_all([gz])[0]] == ["x"]


def test_twitter_v1_objects_use_full_text_and_mark_retweets(tmp_path):
    path = tmp_path / "v1.jsonl"
    path.write_text(json.dumps(V1_TWEET) + "\n" + json.dumps(V1_RETWEET) + "\n", encoding="utf-8")
    (tweet, retweet), rejects = read_all([path])
    assert rejects == []
    assert tweet.text == "Canmore declares state of emergency due to flooding #abflood"
    assert (tweet.post_id, tweet.author) == ("347686624563429378", "CBCAlerts")
    assert tweet.created_at == datetime(2013, 6, 19, 20, 19, 24)
    assert retweet.text == "RT @CBCAlerts: Canmore declares state of emergency due to flooding #abflood"
    assert retweet.retweet_of == "347686624563429378"
    assert retweet.author == "someone"


def test_twitter_v2_responses_and_objects(tmp_path):
    path = tmp_path / "v2.jsonl"
    single = {"data": {"id": "7", "text": "a single tweet response", "author_id": "99"}}
    bare = {"id": "8", "text": "a bare v2 tweet", "author_id": "98", "edit_history_tweet_ids": ["8"]}
    path.write_text("\n".join(json.dumps(o) for o in (V2_RESPONSE, single, bare)) + "\n", encoding="utf-8")
    posts, rejects = read_all([path])
    assert rejects == []
    assert [p.post_id for p in posts] == ["1500000000000000001", "1500000000000000002", "7", "8"]
    assert [p.line for p in posts] == [1, 1, 2, 3]
    assert posts[0].author == "ridgewatch"
    assert posts[0].created_at == datetime(2024, 7, 1, 10, 0)
    assert posts[1].text == "RT @firecrew: Evacuate Pine Hollow now, the fire jumped the highway"
    assert posts[1].retweet_of == "1500000000000000000"
    assert posts[2].author == "99"  # no includes: the author id stands in


def test_generic_jsonl_with_named_and_nested_columns(tmp_path):
    path = tmp_path / "posts.ndjson"
    rows = [{"body": {"msg": "nested text"}, "uid": 5, "who": "ann", "ts": 1700000000}]
    path.write_text(json.dumps(rows[0]) + "\n", encoding="utf-8")
    posts, _ = read_all([path], text_col="body.msg", id_col="uid", author_col="who", time_col="ts")
    assert (posts[0].text, posts[0].post_id, posts[0].author) == ("nested text", "5", "ann")
    assert posts[0].created_at == datetime(2023, 11, 14, 22, 13, 20)


def test_csv_and_tsv_detect_columns_and_keep_line_numbers(tmp_path):
    path = tmp_path / "crisis.csv"
    path.write_text(
        'Tweet ID, Tweet Text, Information Source\n'
        '"1","first, with a comma",Media\n'
        '"2","spans\ntwo lines",Media\n'
        '"3","third",Government\n',
        encoding="utf-8",
    )
    posts, rejects = read_all([path])
    assert rejects == []
    assert [(p.post_id, p.text, p.line) for p in posts] == [
        ("1", "first, with a comma", 2), ("2", "spans\ntwo lines", 3), ("3", "third", 5)
    ]
    tsv = tmp_path / "posts.tsv"
    tsv.write_text("text\tauthor\tcreated_at\nhello there\tbob\t2024-01-02T03:04:05Z\n", encoding="utf-8")
    (post,), _ = read_all([tsv])
    assert (post.text, post.author, post.created_at) == ("hello there", "bob", datetime(2024, 1, 2, 3, 4, 5))


def test_parquet_through_duckdb(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "posts.parquet"
    pq.write_table(pa.table({"id": ["a", "b", "c"], "text": ["one", None, "three"], "user": ["u1", "u2", "u3"]}), path)
    posts, rejects = read_all([path])
    assert [(p.post_id, p.text, p.line, p.author) for p in posts] == [("a", "one", 1, "u1"), ("c", "three", 3, "u3")]
    assert [(r.line, r.reason) for r in rejects] == [(2, "missing_text")]


def test_every_kind_of_malformed_row_is_rejected_with_line_and_reason(tmp_path):
    good = [json.dumps({"id": str(i), "text": f"good post {i}"}).encode() for i in range(6)]
    lines = [
        good[0],
        b'{"id": "x1", "text": "broken json',  # 2 bad_json
        good[1],
        b'{"id": "x2", "text": "bad \xff\xfe bytes"}',  # 4 bad_utf8
        b'{"id": "x3", "text": "nul \x00 byte"}',  # 5 nul_byte
        b'{"id": "x4", "text": "   "}',  # 6 empty_text
        b'{"id": "x5", "note": "no text field"}',  # 7 missing_text
        b'["not", "an", "object"]',  # 8 not_an_object
        good[2],
        b'{"id": "x6", "text": "' + b"A" * 3_000_000 + b'"}',  # 10 too_long
        good[3],
        b"",  # blank line: not a record
        b'{"id": "x7", "text": "escaped nul \\u0000"}',  # 13 nul_byte
        good[4],
        b'{"id": "x8", "text": 42}',  # 15 missing_text (not a string)
        good[5],
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    posts, rejects = read_all([path])
    assert [p.post_id for p in posts] == [str(i) for i in range(6)]
    assert [(r.line, r.reason) for r in rejects] == [
        (2, "bad_json"), (4, "bad_utf8"), (5, "nul_byte"), (6, "empty_text"), (7, "missing_text"),
        (8, "not_an_object"), (10, "too_long"), (13, "nul_byte"), (15, "missing_text"),
    ]
    assert all(r.source == str(path) and r.detail for r in rejects)


@pytest.mark.parametrize("shape", ["generic", "v1", "v2"])
def test_an_id_or_author_that_is_an_object_list_or_boolean_is_a_bad_field(tmp_path, shape):
    def post(number: int, *, post_id=None, author=None) -> dict:
        post_id = f"p{number}" if post_id is None else post_id
        author = "someone" if author is None else author
        if shape == "v1":
            return {"id_str": post_id, "text": f"post {number}", "user": {"screen_name": author}}
        if shape == "v2":
            return {"id": post_id, "text": f"post {number}", "author_id": author, "edit_history_tweet_ids": []}
        return {"id": post_id, "text": f"post {number}", "author": author}

    strange = [{"a": 1}, ["x"], True]
    rows = [post(0)] + [post(1 + i, author=value) for i, value in enumerate(strange)]
    rows += [post(4 + i, post_id=value) for i, value in enumerate(strange)] + [post(7, author=12)]
    path = tmp_path / "posts.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    posts, rejects = read_all([path])
    assert [(p.post_id, p.author) for p in posts] == [("p0", "someone"), ("p7", "12")]
    kinds = ["an object", "a list", "true or false"]
    assert [(r.line, r.reason, r.detail) for r in rejects] == (
        [(2 + i, "bad_field", f"the author is {kind}, not a string or a number") for i, kind in enumerate(kinds)]
        + [(5 + i, "bad_field", f"the post id is {kind}, not a string or a number") for i, kind in enumerate(kinds)])


def test_malformed_csv_rows(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(
        b"id,text\n"
        b"1,good one\n"
        b"2,bad \xff utf8\n"
        b"3,too,many,fields\n"
        b"4,\n"
        b"5,nul \x00 inside\n"
        b"6," + b"B" * 2_000_000 + b"\n"
        b"7,good again\n"
    )
    posts, rejects = read_all([path])
    assert [(p.post_id, p.line) for p in posts] == [("1", 2), ("7", 8)]
    assert [(r.line, r.reason) for r in rejects] == [
        (3, "bad_utf8"), (4, "bad_row"), (5, "empty_text"), (6, "nul_byte"), (7, "too_long"),
    ]


def test_truncated_gzip_keeps_the_good_lines_before_the_damage(tmp_path):
    payload = gzip.compress(b"".join(b"post %d\n" % i for i in range(5000)))
    path = tmp_path / "cut.txt.gz"
    path.write_bytes(payload[: len(payload) // 2])
    posts, rejects = read_all([path])
    assert 0 < len(posts) < 5000
    assert [p.text for p in posts] == [f"post {i}" for i in range(len(posts))]
    assert [r.reason for r in rejects] == ["corrupt_file"]


def test_inputs_are_checked_before_reading(tmp_path):
    with pytest.raises(HiclError, match="does not exist"):
        Corpus([tmp_path / "missing.txt"])
    no_text = tmp_path / "no_text.csv"
    no_text.write_text("id,author\n1,bob\n", encoding="utf-8")
    with pytest.raises(HiclError, match="no text column"):
        Corpus([no_text])
    named = tmp_path / "named.csv"
    named.write_text("id,msg\n1,hi\n", encoding="utf-8")
    with pytest.raises(HiclError, match="'body'"):
        Corpus([named], ReaderConfig(text_col="body"))
    with pytest.raises(HiclError, match="unknown corpus format"):
        Corpus([named], ReaderConfig(format="xml"))


def test_times_parse_or_leave_a_note(tmp_path):
    assert parse_time("2024-01-02T03:04:05+02:00") == datetime(2024, 1, 2, 1, 4, 5)
    assert parse_time(1700000000000) == datetime(2023, 11, 14, 22, 13, 20)
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"text": "a", "created_at": "yesterday-ish"}) + "\n", encoding="utf-8")
    (post,), _ = read_all([path])
    assert post.created_at is None and post.notes == ("bad_created_at",)


def test_real_crisislex_csv_reads_every_row(shared_data):
    files = sorted(Path(shared_data, "crisislex-t26", "data", "CrisisLexT26").glob("*/*-tweets_labeled.csv"))
    assert len(files) == 26
    posts, rejects = read_all(files)
    assert rejects == []
    rows = 0
    for path in files:
        with open(path, encoding="utf-8", newline="") as handle:
            rows += sum(1 for _ in csv.reader(handle)) - 1
    assert len(posts) == rows
    assert all(p.post_id and p.post_id.isdigit() for p in posts)
    assert Counter(Path(p.source).parent.name for p in posts)["2013_Alberta_floods"] > 500
