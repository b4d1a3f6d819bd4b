"""Fuzzing the corpus readers and the command line with Hypothesis.

Each property writes generated files (good rows among bad UTF-8, NULs, deep nesting, huge
numbers, broken quoting, over-long lines, truncated compression, random bytes), reads them and
checks the contract: never an exception but a one-line `HiclError`, every well-formed row a
post with its line and text, every bad one a reject with its line and reason.

CI runs the ``ci`` profile: a fixed set of examples (derandomised, so a run is repeatable).
``HYPOTHESIS_PROFILE=explore pytest tests/test_fuzz.py`` draws new ones, many more of them.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import tempfile
from pathlib import Path

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hicl_retrieval.cli import main
from hicl_retrieval.core.config import ReaderConfig
from hicl_retrieval.core.errors import HiclError
from hicl_retrieval.core.text import is_blank
from hicl_retrieval.corpus import Corpus, Post, Reject

LIMIT = 20_000  # max_record_bytes of these tests: over-long lines stay cheap to make

# Text a post may hold: any character of any script, tabs and line ends but no other control
# character (a file most of whose lines hold those is refused as binary), something that shows.
post_text = st.text(st.characters(exclude_categories=("Cs", "Cc"), include_characters="\t\n\r"), min_size=1,
                    max_size=60).filter(lambda text: not is_blank(text))
line_text = post_text.filter(lambda t: "\n" not in t and "\r" not in t)
plain = st.text(st.characters(min_codepoint=32, max_codepoint=126, exclude_characters='"'), max_size=30)
ids = st.integers(min_value=1, max_value=10**18).map(str)


def read(path: Path, **options) -> tuple[list[Post], list[Reject]]:
    records = list(Corpus([path], ReaderConfig(max_record_bytes=LIMIT, **options)))
    return [r for r in records if isinstance(r, Post)], [r for r in records if isinstance(r, Reject)]


def in_tmp(name: str, data: bytes):
    folder = tempfile.TemporaryDirectory()
    path = Path(folder.name) / name
    path.write_bytes(data)
    return folder, path


# ---------------------------------------------------------------------------------------------
# JSON lines: each generated line is (bytes, expected post (text, id) or expected reject reason)

json_good = st.builds(lambda text, post_id, ascii_: (
    json.dumps({"id": post_id, "text": text}, ensure_ascii=ascii_).encode(), (text.strip(), post_id)),
    post_text, ids, st.booleans())
json_bad = st.one_of(
    st.builds(lambda text, cut: (json.dumps({"text": text}).encode()[:-cut], "bad_json"), post_text,
              st.integers(1, 5)),
    st.builds(lambda depth: (b"[" * depth + b"]" * depth, "bad_json"), st.integers(5000, 9000)),
    st.builds(lambda depth: (b'{"a":' * depth + b"1" + b"}" * depth, "bad_json"), st.integers(2000, 3000)),
    st.builds(lambda digits: (b'{"text": "x", "n": ' + b"7" * digits + b"}", "bad_json"), st.integers(4400, 6000)),
    st.builds(lambda text: (json.dumps({"text": text}).encode().replace(b'": "', b'": "\x00', 1), "nul_byte"),
              post_text),
    st.builds(lambda text, junk: (json.dumps({"text": text}).encode()[:-2] + junk + b'"}', "bad_utf8"),
              post_text, st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"])),
    st.just((b'{"text": "lone \\ud800 surrogate"}', "bad_utf8")),
    st.just((b'{"text": "escaped \\u0000 nul"}', "nul_byte")),
    st.builds(lambda value: (json.dumps(value).encode(), "not_an_object"),
              st.one_of(st.lists(st.integers(), max_size=3), st.integers(), st.text(max_size=10))),
    st.just((b'{"note": "no text here"}', "missing_text")),
    st.builds(lambda value: (json.dumps({"text": value}).encode(), "missing_text"),
              st.one_of(st.integers(), st.lists(st.integers(), max_size=2), st.booleans())),
    st.builds(lambda spaces: (json.dumps({"text": spaces}).encode(), "empty_text"),
              st.text(" \t\u3000", min_size=0, max_size=4)),
    st.builds(lambda size: (json.dumps({"text": "y" * size}).encode(), "too_long"), st.integers(LIMIT, LIMIT + 500)),
)


@given(json_good, st.lists(st.one_of(json_good, json_bad, st.just((b"", None))), max_size=25))
def test_json_lines_every_good_row_a_post_every_bad_one_a_reject(first, rest):
    # The first row is good: a file whose first line is a list would be read as one JSON array.
    rows = [first, *rest]
    folder, path = in_tmp("posts.jsonl", b"\n".join(data for data, _ in rows) + b"\n")
    with folder:
        try:
            posts, rejects = read(path)
        except HiclError:  # a file the sniffer takes for binary: only when bad rows are most of it
            assert sum(isinstance(want, str) for _, want in rows) * 2 > sum(bool(data) for data, _ in rows)
            return
    wanted_posts = [(n, *want) for n, (_, want) in enumerate(rows, 1) if isinstance(want, tuple)]
    wanted_rejects = [(n, want) for n, (_, want) in enumerate(rows, 1) if isinstance(want, str)]
    assert [(p.line, p.text, p.post_id) for p in posts] == wanted_posts
    assert [(r.line, r.reason) for r in rejects] == wanted_rejects


# ---------------------------------------------------------------------------------------------
# CSV: good rows written by csv.writer (quotes, commas, newlines inside fields), bad ones by hand


def _csv_row(values: list[str]) -> str:
    """One row as csv.writer writes it, ending in CRLF (RFC 4180): fields holding CR or LF are quoted."""
    buffer = io.StringIO()
    csv.writer(buffer).writerow(values)
    return buffer.getvalue()


csv_good = st.builds(lambda post_id, text, author: (_csv_row([post_id, text, author]).encode(),
                                                    (text.strip(), post_id)),
                     ids, post_text, plain.filter(lambda a: "," not in a))
csv_bad = st.one_of(
    # A quote that never closes. Two such quotes, the second followed by the delimiter, would pair
    # up into one well-formed field spanning lines, which no reader can tell from a real one.
    st.builds(lambda post_id, text, author: (f'{post_id},"{text},{author}\n'.encode(), "bad_row"),
              ids, plain.filter(lambda t: t[:1] not in ("", ",", " ")), plain),
    st.builds(lambda post_id, text: (f"{post_id},{text},a,b\n".encode(), "bad_row"),
              ids, plain.filter(lambda t: "," not in t)),
    st.builds(lambda post_id, junk: (f"{post_id},bad ".encode() + junk + b" bytes,a\n", "bad_utf8"),
              ids, st.sampled_from([b"\xff", b"\xc3\x28", b"\xe2\x82"])),
    st.builds(lambda post_id: (f"{post_id},nul \x00 inside,a\n".encode(), "nul_byte"), ids),
    st.builds(lambda post_id: (f'{post_id},"   ",a\n'.encode(), "empty_text"), ids),
    st.builds(lambda post_id, size: (f"{post_id},{'z' * size},a\n".encode(), "too_long"),
              ids, st.integers(LIMIT, LIMIT + 500)),
)


@given(st.lists(st.one_of(csv_good, csv_bad), min_size=1, max_size=25))
def test_csv_every_good_row_a_post_every_bad_one_a_reject(rows):
    content = b"id,text,author\n" + b"".join(data for data, _ in rows)
    folder, path = in_tmp("posts.csv", content)
    with folder:
        try:
            posts, rejects = read(path)
        except HiclError:  # a file the sniffer takes for binary: only when bad rows are most of it
            assert sum(isinstance(want, str) for _, want in rows) * 2 > len(rows)
            return
    line, wanted_posts, wanted_rejects = 2, [], []
    for data, want in rows:
        if isinstance(want, tuple):
            wanted_posts.append((line, *want))
        else:
            wanted_rejects.append((line, want))
        line += data.count(b"\n")
    assert [(p.line, p.text, p.post_id) for p in posts] == wanted_posts
    assert [(r.line, r.reason) for r in rejects] == wanted_rejects


# ---------------------------------------------------------------------------------------------
# Truncated compression and random bytes


@given(st.lists(line_text, min_size=1, max_size=300), st.sampled_from(["gz", "zst"]), st.floats(0, 1))
def test_truncated_compression_keeps_a_prefix_and_reports_the_damage(lines, kind, where):
    content = "".join(f"{line}\n" for line in lines).encode()
    packed = gzip.compress(content) if kind == "gz" else zstandard.ZstdCompressor().compress(content)
    cut = 4 + int(where * (len(packed) - 5))  # keep the magic bytes, lose at least one byte
    folder, path = in_tmp(f"posts.txt.{kind}", packed[:cut])
    with folder:
        posts, rejects = read(path)
    assert [p.text for p in posts] == [line.strip() for line in lines[: len(posts)]]
    assert [(r.line, r.reason) for r in rejects] == [(len(posts) + 1, "corrupt_file")]


@given(st.binary(max_size=3000), st.sampled_from(["txt", "jsonl", "csv", "tsv", "json", "txt.gz", "jsonl.zst"]))
def test_random_bytes_are_refused_or_read_never_a_traceback(data, suffix):
    if suffix.endswith("gz"):
        data = gzip.compress(data)[: max(4, len(data))]
    elif suffix.endswith("zst"):
        data = zstandard.ZstdCompressor().compress(data)[: max(4, len(data))]
    folder, path = in_tmp(f"random.{suffix}", data)
    with folder:
        try:
            records = list(Corpus([path], ReaderConfig(max_record_bytes=LIMIT)))
        except HiclError as error:
            assert "\n" not in str(error)
            return
    assert all(isinstance(r, (Post, Reject)) for r in records)
    assert all(r.line >= 1 for r in records)


# ---------------------------------------------------------------------------------------------
# The command line: generated settings and queries end in a result or in one line, exit 1 or 2


@pytest.fixture(scope="module")
def fuzz_index(tmp_path_factory, tiny_hashencoder):
    root = tmp_path_factory.mktemp("fuzz")
    corpus = root / "posts.jsonl"
    corpus.write_text("".join(json.dumps({"id": str(i), "text": f"post {i} about #topic{i % 3}", "author": f"u{i % 4}",
                                          "created_at": f"2024-05-{1 + i % 28:02d}"}) + "\n" for i in range(30)),
                      encoding="utf-8")
    assert main(["build", str(corpus), "--out", str(root / "index"), "--encoder", str(tiny_hashencoder),
                 "--pooling", "pooler", "--quiet"]) == 0
    return root, corpus, tiny_hashencoder


def run_cli(capsys, argv: list[str]) -> int:
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if code:
        assert code in (1, 2) and len([line for line in err.splitlines() if "error:" in line]) == 1, err
    return code


numbers = st.one_of(st.integers(-5, 5000).map(str), st.floats(allow_nan=True).map(str), st.text(max_size=6))


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.sampled_from(["--batch-size", "--chunk-size", "--threads", "--target-recall", "--max-memory",
                        "--max-record-bytes", "--time-format", "--index", "--delimiter"]), numbers)
def test_build_settings(fuzz_index, capsys, tmp_path_factory, option, value):
    root, corpus, encoder = fuzz_index
    out = tmp_path_factory.mktemp("out") / "index"
    argv = ["build", str(corpus), "--out", str(out), "--encoder", str(encoder), "--quiet", f"{option}={value}"]
    if run_cli(capsys, argv) == 0:
        assert (out / "manifest.json").is_file()
    else:
        assert not (out / "manifest.json").exists()


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.text(max_size=200), st.sampled_from(["-k", "--k-factor", "--since", "--until", "--author",
                                                "--has-hashtag", "--source", "--threads"]), numbers)
def test_query_texts_and_filters(fuzz_index, capsys, text, option, value):
    root, _, _ = fuzz_index
    if "\x00" in text:  # the OS refuses NUL inside a command-line argument; main() never sees one
        return
    run_cli(capsys, ["query", str(root / "index"), text, "--json", f"{option}={value}"])
