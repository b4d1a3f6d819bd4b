"""Bytes that are not UTF-8 on the command line (case 11 of the hardening issue): one line, exit 1, nothing written.

Python decodes such bytes of argv and of file names as lone surrogates (``\\udcff``), which DuckDB,
FAISS and JSON cannot take. A query, a filter value or a post id is refused as text; a file or
folder name is refused before anything is created, with the advice to rename it.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import built_index

from hicl_retrieval.cli import main

BAD = b"\xff"


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_encoder):
    """A small index of the tiny model (its manifest names the model, so a subprocess can load it)."""
    root = tmp_path_factory.mktemp("bytes")
    built_index(root, tiny_encoder)
    return root


def under(folder: Path, name: bytes) -> bytes:
    return os.path.join(os.fsencode(folder), name)


def one_line_error(captured_err: str) -> str:
    lines = captured_err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("hicl-retrieval: error: "), captured_err
    assert "Traceback" not in captured_err
    return lines[0]


# argv after the command name; INDEX stands for the index folder, TMP for the test's folder
ARGV_CASES = {
    "query": ([b"query", b"INDEX", b"flood " + BAD], "the query is not valid UTF-8 (it holds the byte 0xff)"),
    "author": ([b"query", b"INDEX", b"flood", b"--author", b"user" + BAD], "the author filter's name"),
    "has-hashtag": ([b"query", b"INDEX", b"flood", b"--has-hashtag", b"topic" + BAD], "the hashtag filter's tag"),
    "lacks-hashtag": ([b"query", b"INDEX", b"flood", b"--lacks-hashtag", b"topic" + BAD], "the hashtag filter's tag"),
    "exclude-author": ([b"query", b"INDEX", b"flood", b"--exclude-author", b"user" + BAD], "the author filter's name"),
    "source": ([b"query", b"INDEX", b"flood", b"--source", b"posts-" + BAD + b".jsonl"], "the source filter's name"),
    "delete": ([b"delete", b"INDEX", b"--post-id", b"1003" + BAD], "the post id"),
    "query file": ([b"query", b"INDEX", b"--file", b"TMP/queries-" + BAD + b".txt"],
                   "the query file name TMP/queries-\\xff.txt is not valid UTF-8 (it holds the byte 0xff); rename it"),
    "out": ([b"query", b"INDEX", b"flood", b"--out", b"TMP/hits-" + BAD + b".jsonl"],
            "the output file name TMP/hits-\\xff.jsonl is not valid UTF-8 (it holds the byte 0xff); "
            "choose a name in UTF-8"),
    "export out": ([b"export", b"INDEX", b"--out", b"TMP/posts-" + BAD + b".jsonl"], "the output file name"),
    "index folder": ([b"info", b"INDEX" + BAD], "the index folder name INDEX\\xff is not valid UTF-8"),
}


@pytest.mark.parametrize("case", ARGV_CASES)
def test_11_non_utf8_bytes_in_argv_fail_in_one_line(built, tmp_path, case):
    argv, message = ARGV_CASES[case]
    index, tmp = os.fsencode(built / "index"), os.fsencode(tmp_path)
    argv = [arg.replace(b"INDEX", index).replace(b"TMP", tmp) for arg in argv]
    with open(under(tmp_path, b"queries-" + BAD + b".txt"), "wb") as handle:  # exists: its name is the problem
        handle.write(b"football final\n")
    before = sorted(os.listdir(os.fsencode(tmp_path))), (built / "index" / "manifest.json").read_bytes()
    done = subprocess.run([sys.executable, "-m", "hicl_retrieval.cli", *argv], capture_output=True, timeout=120)
    err = done.stderr.decode("utf-8")
    assert done.returncode == 1, err
    assert message.replace("INDEX", str(built / "index")).replace("TMP", str(tmp_path)) in one_line_error(err)
    assert done.stdout == b""
    assert (sorted(os.listdir(os.fsencode(tmp_path))), (built / "index" / "manifest.json").read_bytes()) == before


def bad_corpus(folder: Path, source: Path) -> str:
    """A copy of `source` named ``posts-\\xff.jsonl`` in `folder`, as Python names it (what argv holds)."""
    path = under(folder, b"posts-" + BAD + b".jsonl")
    with open(path, "wb") as handle:
        handle.write(source.read_bytes())
    return os.fsdecode(path)


@pytest.mark.parametrize("case", ["build file", "build folder", "build out", "build out parent", "build encoder",
                                  "add"])
def test_11_corpus_and_index_names_that_are_not_utf8_are_refused_before_anything_is_made(
        built, tmp_path, capsys, tiny_hashencoder, case):
    good = built / "posts.jsonl"
    out = tmp_path / "index"
    shown = str(tmp_path / "posts-\\xff.jsonl")
    if case == "build file":
        argv, message = ["build", bad_corpus(tmp_path, good), "--out", str(out)], f"the corpus file name {shown}"
    elif case == "build folder":  # a name found in a folder, not typed
        (tmp_path / "dump").mkdir()
        argv = ["build", str(tmp_path / "dump"), "--out", str(out)]
        message = f"the corpus file name {tmp_path / 'dump' / 'posts-'}\\xff.jsonl"
        bad_corpus(tmp_path / "dump", good)
    elif case == "build out":
        argv = ["build", str(good), "--out", os.fsdecode(under(tmp_path, b"index-" + BAD))]
        message = f"the index folder name {tmp_path / 'index-'}\\xff is not valid UTF-8"
    elif case == "build out parent":
        os.mkdir(under(tmp_path, b"folder-" + BAD))
        argv = ["build", str(good), "--out", os.fsdecode(under(tmp_path, b"folder-" + BAD + b"/index"))]
        message = f"the index folder name {tmp_path / 'folder-'}\\xff/index is not valid UTF-8"
    elif case == "build encoder":  # safetensors opens only UTF-8 paths
        model = shutil.copytree(tiny_hashencoder, os.fsdecode(under(tmp_path, b"model-" + BAD)))
        argv = ["build", str(good), "--out", str(out), "--encoder", model, "--quiet"]
        message = f"the encoder name {tmp_path / 'model-'}\\xff is not valid UTF-8"
    else:
        argv, message = ["add", str(built / "index"), bad_corpus(tmp_path, good)], f"the corpus file name {shown}"
    if argv[0] == "build" and "--encoder" not in argv:
        argv += ["--encoder", str(tiny_hashencoder), "--quiet"]
    before = _tree(tmp_path), (built / "index" / "manifest.json").read_bytes()
    assert main(argv) == 1
    captured = capsys.readouterr()
    line = one_line_error(captured.err)
    assert message in line and "(it holds the byte 0xff)" in line, line
    assert line.endswith("choose a name in UTF-8" if case.startswith("build out") else "rename it")
    assert (_tree(tmp_path), (built / "index" / "manifest.json").read_bytes()) == before  # nothing made, no stray file


def _tree(folder: Path) -> list[bytes]:
    return sorted(os.path.join(top, name) for top, dirs, files in os.walk(os.fsencode(folder)) for name in dirs + files)
