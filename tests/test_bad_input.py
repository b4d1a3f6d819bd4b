"""Damaged and unusual corpus files: each row is a post or a reject with its line, never a traceback.

The numbers in the test names are the cases of the hardening issue that found them.
"""

import gzip
import json
import os
from datetime import datetime
from pathlib import Path

import pytest
import zstandard

from hicl_retrieval.core.config import ReaderConfig
from hicl_retrieval.core.errors import HiclError
from hicl_retrieval.core.times import parse_post_time
from hicl_retrieval.corpus import Corpus, Post, Reject, estimate_records, normalize_post_id


def read_all(paths, **options):
    records = list(Corpus([str(p) for p in paths], ReaderConfig(**options)))
    return [r for r in records if isinstance(r, Post)], [r for r in records if isinstance(r, Reject)]


def test_2_an_unbalanced_quote_is_reported_and_the_next_rows_are_kept(tmp_path):
    path = tmp_path / "quotes.csv"
    path.write_text(
        "id,text,author\n"
        '1,"a quote that never closes,alice\n'  # 2: would swallow rows 3 and 4
        "2,second post,bob\n"
        '3,"quoted, with a comma",carol\n'
        '4,"a post over\ntwo lines",dave\n'  # 5-6: a real multi-line field
        '5,"He said "hi" there",erin\n'  # 7: a stray quote on one line is kept as text
        '6,"runs to the end of the file,frank\n'
        "7,last post,grace\n",
        encoding="utf-8",
    )
    posts, rejects = read_all([path])
    assert [(p.post_id, p.line) for p in posts] == [("2", 3), ("3", 4), ("4", 5), ("5", 7), ("7", 9)]
    assert posts[2].text == "a post over\ntwo lines"
    assert [(r.line, r.reason) for r in rejects] == [(2, "bad_row"), (8, "bad_row")]
    assert "quote opened on this line is not closed" in rejects[0].detail


def test_6_a_small_truncated_gzip_is_estimated_and_read_up_to_the_damage(tmp_path):
    payload = gzip.compress(b"".join(b"post %d\n" % i for i in range(3000)))
    path = tmp_path / "cut.txt.gz"
    path.write_bytes(payload[: len(payload) // 2])
    assert path.stat().st_size < 4 << 20
    estimate = estimate_records(path, "text")
    posts, rejects = read_all([path])
    assert 0 < len(posts) < 3000 and estimate in (len(posts), len(posts) + 1)  # + the cut line
    assert [p.text for p in posts] == [f"post {i}" for i in range(len(posts))]
    assert [(r.line, r.reason) for r in rejects] == [(len(posts) + 1, "corrupt_file")]


def test_7_absurd_json_is_one_bad_row(tmp_path):
    path = tmp_path / "deep.jsonl"
    path.write_text(
        '{"text": "first"}\n'
        + '{"a": ' * 100_000 + "1" + "}" * 100_000 + "\n"
        + '{"text": "second", "n": ' + "9" * 5000 + "}\n"  # more digits than Python converts
        + '{"text": "lone surrogate \\ud800"}\n'
        + '{"text": "third"}\n',
        encoding="utf-8",
    )
    posts, rejects = read_all([path])
    assert [(p.line, p.text) for p in posts] == [(1, "first"), (5, "third")]
    assert [(r.line, r.reason) for r in rejects] == [(2, "bad_json"), (3, "bad_json"), (4, "bad_utf8")]
    assert rejects[0].detail == "nested too deeply"


@pytest.mark.parametrize("cut", ["half", "end"])
def test_12_a_truncated_zstd_file_is_corrupt_not_empty(tmp_path, cut):
    lines = b"".join(json.dumps({"text": f"post {i} " + "x" * (i % 50)}).encode() + b"\n" for i in range(20000))
    payload = zstandard.ZstdCompressor(level=3).compress(lines)
    path = tmp_path / "cut.jsonl.zst"
    path.write_bytes(payload[: len(payload) // 2] if cut == "half" else payload[:-3])
    posts, rejects = read_all([path])
    assert [p.text.split()[:2] for p in posts] == [["post", str(i)] for i in range(len(posts))]
    assert [r.reason for r in rejects] == ["corrupt_file"]
    assert rejects[0].line == len(posts) + 1 and "truncated" in rejects[0].detail
    whole = tmp_path / "whole.jsonl.zst"
    whole.write_bytes(payload + zstandard.ZstdCompressor().compress(b'{"text": "second frame"}\n'))
    posts, rejects = read_all([whole])
    assert len(posts) == 20001 and posts[-1].text == "second frame" and rejects == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (os.urandom(3000), "binary"),
        ("post one\npost two\n".encode("utf-16"), "UTF-16"),
        ("été à Montréal, déjà vu\n".encode("latin-1") * 50, "not valid UTF-8"),
    ],
)
def test_13_a_file_that_is_not_utf8_text_is_refused_in_one_line(tmp_path, content, message):
    path = tmp_path / "dump.txt"
    path.write_bytes(content)
    with pytest.raises(HiclError, match=message) as error:
        Corpus([path])
    assert "\n" not in str(error.value)


def test_13_a_text_file_with_a_few_bad_lines_is_still_read(tmp_path):
    path = tmp_path / "mostly.txt"
    path.write_bytes(b"good post\n" * 200 + b"bad \x00 \x01 \xff line\n" + b"good again\n")
    posts, rejects = read_all([path])
    assert len(posts) == 201 and [(r.line, r.reason) for r in rejects] == [(201, "nul_byte")]


def test_21_a_json_array_is_streamed_element_by_element(tmp_path):
    tweets = [{"id_str": str(i), "text": f"tweet {i} #flood", "user": {"screen_name": f"user{i}"}} for i in range(500)]
    elements = tweets[:2] + [5, {"text": ""}] + tweets[2:]
    path = tmp_path / "tweets.json"
    path.write_text(json.dumps(elements, indent=2), encoding="utf-8")
    posts, rejects = read_all([path])
    assert [p.post_id for p in posts] == [str(i) for i in range(500)]
    assert posts[0].author == "user0" and posts[2].line == 5
    assert [(r.line, r.reason) for r in rejects] == [(3, "not_an_object"), (4, "empty_text")]
    assert estimate_records(path, "jsonl") == 502
    minified = tmp_path / "minified.json.gz"
    minified.write_bytes(gzip.compress(json.dumps(tweets).encode()))
    assert len(read_all([minified])[0]) == 500


def test_21_a_broken_json_array_keeps_the_elements_before_the_damage(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[{"text": "a"}, {"text": "b"} {"text": "c"}]', encoding="utf-8")
    posts, rejects = read_all([path])
    assert [p.text for p in posts] == ["a", "b"]
    assert [(r.line, r.reason) for r in rejects] == [(3, "corrupt_file")]
    cut = tmp_path / "cut.json"
    cut.write_text('[{"text": "a"}, {"text": "b"}, {"text": "unfini', encoding="utf-8")
    assert [r.reason for r in read_all([cut])[1]] == ["corrupt_file"]


def test_4_and_22_times_digits_day_first_and_a_warning(tmp_path):
    assert parse_post_time("20141023") == datetime(2014, 10, 23)
    assert parse_post_time("2015") == datetime(2015, 1, 1)
    assert parse_post_time("1414022400") == datetime(2014, 10, 23)
    assert parse_post_time("10/3/2020", "%d/%m/%Y") == datetime(2020, 3, 10)
    assert parse_post_time("1414022400000", "unix_ms") == datetime(2014, 10, 23)
    path = tmp_path / "days.csv"
    path.write_text("text,date\nhello,10/3/2020\nworld,11/3/2020\nagain,2020-03-12\n", encoding="utf-8")
    corpus = Corpus([path])
    posts = [r for r in corpus if isinstance(r, Post)]
    assert [p.notes for p in posts] == [("bad_created_at",), ("bad_created_at",), ()]
    assert len(corpus.time_warnings) == 1 and "2 of 3 posts" in corpus.time_warnings[0]
    assert "--time-format" in corpus.time_warnings[0]
    corpus = Corpus([path], ReaderConfig(time_format="%d/%m/%Y"))
    assert [p.created_at for p in corpus if isinstance(p, Post)][:2] == [datetime(2020, 3, 10), datetime(2020, 3, 11)]
    with pytest.raises(HiclError, match="no strptime directive"):
        ReaderConfig(time_format="dd/mm/yyyy")


def test_25_post_ids_lose_their_quotes_and_spaces(tmp_path):
    path = tmp_path / "ids.csv"
    path.write_text("id,text\n'3141592653589793',pi\n\" 42 \",answer\n`7`,seven\n", encoding="utf-8")
    posts, _ = read_all([path])
    assert [p.post_id for p in posts] == ["3141592653589793", "42", "7"]
    assert normalize_post_id(" '3141592653589793' ") == "3141592653589793"
    assert normalize_post_id(1.0) == "1" and normalize_post_id("''") is None


def test_27_a_folder_is_read_recursively_and_unknown_files_are_named(tmp_path):
    folder = tmp_path / "dump"
    (folder / "day2").mkdir(parents=True)
    (folder / "a.jsonl").write_text('{"text": "from a"}\n', encoding="utf-8")
    (folder / "day2" / "b.txt.gz").write_bytes(gzip.compress(b"from b\n"))
    (folder / "README.md").write_text("# notes\n", encoding="utf-8")
    (folder / ".hidden.txt").write_text("not read\n", encoding="utf-8")
    corpus = Corpus([folder])
    assert [Path(f.path).name for f in corpus.files] == ["a.jsonl", "b.txt.gz"]
    assert [r.text for r in corpus] == ["from a", "from b"]
    assert corpus.skipped == [folder / "README.md"]
    assert "skipped 1 files of no known corpus format" in corpus.skipped_summary()
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.md").write_text("x", encoding="utf-8")
    with pytest.raises(HiclError, match="holds no corpus file"):
        Corpus([empty])


def test_21_one_pretty_printed_object_is_one_record(tmp_path):
    response = {"data": [{"id": "1", "text": "smoke over the ridge", "author_id": "7"},
                         {"id": "2", "text": "evacuate now", "author_id": "7"}],
                "includes": {"users": [{"id": "7", "username": "ridgewatch"}]}}
    path = tmp_path / "response.json"
    path.write_text(json.dumps(response, indent=2), encoding="utf-8")
    posts, rejects = read_all([path])
    assert [(p.line, p.text, p.author) for p in posts] == [(1, "smoke over the ridge", "ridgewatch"),
                                                             (1, "evacuate now", "ridgewatch")]
    event = tmp_path / "event_description.json"
    event.write_text(json.dumps({"name": "Alberta Floods", "year": 2013}, indent=4), encoding="utf-8")
    assert [(r.line, r.reason) for r in read_all([event])[1]] == [(1, "missing_text")]
    lines = tmp_path / "lines.jsonl"  # JSON lines whose first row is broken stay JSON lines
    lines.write_text('{"text": "cut\n{"text": "whole"}\n', encoding="utf-8")
    posts, rejects = read_all([lines])
    assert [p.text for p in posts] == ["whole"] and [(r.line, r.reason) for r in rejects] == [(1, "bad_json")]


def test_a_post_of_only_invisible_characters_is_rejected_as_empty(tmp_path):
    path = tmp_path / "posts.jsonl"
    path.write_text("".join(json.dumps({"id": str(i), "text": text}) + "\n" for i, text in
                            enumerate(["\u200b", "flood\u200b", "\ufeff \u2060"])), encoding="utf-8")
    posts, rejects = read_all([path])
    assert [p.post_id for p in posts] == ["1"]
    invisible = "text shows nothing (only invisible characters)"
    assert [(r.line, r.reason, r.detail) for r in rejects] == [(1, "empty_text", invisible), (3, "empty_text", invisible)]
