"""Damaged index files: checksums, `verify`, impossible answers refused, one-line errors.

The numbers in the test names are the cases of the hardening issue that found them.
"""

import json
import shutil

import numpy as np
import pytest
from helpers import write_corpus

from hicl_retrieval import BuildConfig, HiclError, Retriever, add_posts, build_index, compact, reindex
from hicl_retrieval.cli import main
from hicl_retrieval.index.checksums import block_digests, damaged_ranges
from hicl_retrieval.index.directory import IndexDir
from hicl_retrieval.index.manifest import MANIFEST
from hicl_retrieval.workflows.verify import verify_index


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, tiny_encoder):
    root = tmp_path_factory.mktemp("damage")
    corpus = root / "posts.jsonl"
    write_corpus(corpus)
    build_index([corpus], root / "index", BuildConfig(encoder=tiny_encoder.config, progress=False),
                encoder=tiny_encoder)
    return root / "index", corpus


@pytest.fixture
def index(pristine, tmp_path):
    copy = tmp_path / "index"
    shutil.copytree(pristine[0], copy)
    return copy


def garble(path, offset, data):
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def damaged_names(path):
    return [check.what for check in verify_index(path).damaged]


def test_5_the_manifest_records_a_checksum_of_every_file_and_verify_checks_them(index, capsys):
    manifest = IndexDir(index).read_manifest()
    assert set(manifest.checksums) == set(manifest.files) == {"seg-0.f16", "seg-0.ids.npy", "seg-0.duckdb",
                                                               "rejects.jsonl", "seg-0.faiss", "trained-0.faiss",
                                                               "seg-0.rows", "seg-0.rows.offsets.npy",
                                                               "seg-0.postids.npy", "seg-0.postids.buckets.npy"}
    assert damaged_names(index) == []
    assert main(["verify", str(index)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == f"{index}: intact" and "FAISS index contents: 62 vectors" in out


def test_5_a_faiss_index_garbled_in_place_is_refused_and_reindex_mends_it(index, tiny_encoder, capsys):
    faiss_bytes = (index / "seg-0.faiss").read_bytes()
    first_row = np.fromfile(index / "seg-0.f16", dtype=np.float16, count=32).astype(np.float32).tobytes()
    codes = faiss_bytes.index(first_row)  # where the flat index keeps its float32 vectors
    huge = np.random.default_rng(0).choice([-5.9e36, 5.9e36], size=32 * 40).astype(np.float32)
    garble(index / "seg-0.faiss", codes, huge.tobytes())
    assert (index / "seg-0.faiss").stat().st_size == len(faiss_bytes)
    with Retriever(index, encoder=tiny_encoder) as retriever:
        with pytest.raises(HiclError, match=r"answered with a cosine of .* run `hicl-retrieval verify"):
            retriever.search("river flooding downtown", k=10)
    assert main(["verify", str(index)]) == 1
    captured = capsys.readouterr()
    assert "DAMAGED  seg-0.faiss: 1 of 1 blocks differ from their SHA-256" in captured.out
    assert "`hicl-retrieval reindex" in captured.err and captured.err.count("\n") == 1
    reindex(index, "flat")
    assert damaged_names(index) == []
    with Retriever(index, encoder=tiny_encoder) as retriever:
        assert len(retriever.search("river flooding downtown", k=10)[0].hits) == 10


def test_5_damaged_vectors_are_found_and_never_copied_by_reindex_or_compact(index):
    garble(index / "seg-0.f16", 64 * 10, b"\xff" * 64)  # NaNs in one row
    assert damaged_names(index) == ["seg-0.f16", "seg-0.f16 contents"]
    for change in (lambda: reindex(index, "hnsw"), lambda: compact(index)):
        with pytest.raises(HiclError, match=r"seg-0.f16 is damaged: 1 of its blocks differ"):
            change()
    assert damaged_names(index) == ["seg-0.f16", "seg-0.f16 contents"]  # nothing changed


def test_5_an_index_without_checksums_is_still_checked_by_its_contents(index):
    data = json.loads((index / MANIFEST).read_text())
    (index / MANIFEST).write_text(json.dumps({**data, "checksums": {}}))
    report = verify_index(index)
    assert report.damaged == [] and "no checksums recorded" in report.lines()[0]
    garble(index / "seg-0.f16", 64 * 3, np.full(32, 7, dtype=np.float16).tobytes())  # not a unit vector
    assert damaged_names(index) == ["seg-0.f16 contents"]


def test_5_add_and_delete_keep_the_checksums_current(index, tiny_encoder, tmp_path):
    more = tmp_path / "more.jsonl"
    more.write_text(json.dumps({"id": "9001", "text": "a brand new post about the river"}) + "\n", encoding="utf-8")
    add_posts(index, [more], encoder=tiny_encoder, progress=False)
    assert main(["delete", str(index), "--post-id", "1001"]) == 0
    assert damaged_names(index) == []


def test_5_block_checksums_of_an_appended_file_reuse_the_blocks_already_covered(tmp_path):
    path = tmp_path / "grows.bin"
    path.write_bytes(b"a" * 40)
    first = block_digests(path, 40, block=16)
    assert len(first) == 3
    with open(path, "ab") as handle:
        handle.write(b"b" * 30)
    stale = ["reused"] * 3  # whole blocks of the old prefix are not read again
    assert block_digests(path, 70, stale, 40, block=16)[:2] == ["reused", "reused"]
    assert block_digests(path, 70, first, 40, block=16) == block_digests(path, 70, block=16)
    garble(path, 20, b"X")  # damage before the next commit is not blessed by it: old digests are reused
    assert damaged_ranges(path, 70, block_digests(path, 70, first, 40, block=16), block=16) == [(16, 32)]
    assert damaged_ranges(path, 70, block_digests(path, 70, block=16), block=16) == []


def test_11_a_damaged_post_store_rows_or_faiss_header_is_one_line(index, capsys):
    store = index / "seg-0.duckdb"
    rng = np.random.default_rng(1)
    for offset in range(300_000, store.stat().st_size, 50_000):
        garble(store, offset, rng.bytes(64))
    err = _query_error(index, capsys, "--has-hashtag", "#topic2")  # a filter asks the post store
    assert "the post store" in err and "is damaged" in err and "verify" in err
    assert "seg-0.duckdb contents" in damaged_names(index)
    rows = index / "seg-0.rows"
    garble(rows, 0, b"\xc1" * rows.stat().st_size)  # a byte msgpack never uses
    err = _query_error(index, capsys)
    assert "the post rows of" in err and "cannot be read" in err and "verify" in err
    assert "seg-0.rows" in damaged_names(index)
    garble(store, 0, b"not a database" * 100)  # its header: DuckDB cannot open it at all
    err = _query_error(index, capsys)
    assert "cannot open the post store" in err and f"run `hicl-retrieval verify {index}`" in err
    garble(index / "seg-0.faiss", 0, b"XXXX")
    err = _query_error(index, capsys)
    assert "the FAISS index" in err and "is damaged and cannot be read" in err


def _query_error(index, capsys, *options: str) -> str:
    assert main(["query", str(index), "river flooding", "-k", "5", *options]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("hicl-retrieval")]
    assert len(lines) == 1 and "Traceback" not in err
    return lines[0]


def test_18_messages_say_what_is_actually_there(index, pristine, tmp_path, capsys, tiny_hashencoder):
    (index / MANIFEST).unlink()
    assert main(["info", str(index)]) == 1
    assert "holds index files but no manifest.json (it was deleted or lost)" in capsys.readouterr().err
    assert main(["build", str(pristine[1]), "--out", str(index), "--encoder", str(tiny_hashencoder), "--quiet"]) == 1
    assert "neither manifest.json nor build.json" in capsys.readouterr().err
    stranger = tmp_path / "photos"
    stranger.mkdir()
    (stranger / "cat.jpg").write_bytes(b"\xff\xd8")
    assert main(["info", str(stranger)]) == 1
    assert "is not an index directory: it has no manifest.json (it holds cat.jpg)" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["info", str(empty)]) == 1
    assert "is an empty directory, not an index" in capsys.readouterr().err


def test_a_damaged_deletion_record_is_one_line_and_verify_reports_it(index, capsys):
    assert main(["delete", str(index), "--post-id", "1001"]) == 0
    (record,) = IndexDir(index).read_manifest().deletions
    garble(index / record.file, 0, b"garbage!")
    err = _query_error(index, capsys)
    assert record.file in err and "is damaged" in err and "verify" in err
    assert damaged_names(index) == [record.file, "deletion records"]


def test_post_id_hashes_that_do_not_fit_their_buckets_are_one_line_and_add_nothing(index, tmp_path, capsys):
    more = tmp_path / "more.jsonl"
    more.write_text(json.dumps({"id": "9001", "text": "a brand new post about the river"}) + "\n", encoding="utf-8")
    before = IndexDir(index).read_manifest()
    for name, data in (("seg-0.postids.buckets.npy", np.zeros(5, np.int64)),  # not 2**bits + 1 starts
                       ("seg-0.postids.npy", None)):
        if data is None:
            garble(index / name, 0, b"not an array")
        else:
            np.save(index / name, data)
        assert main(["add", str(index), str(more), "--quiet"]) == 1
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.startswith("hicl-retrieval")]
        assert len(lines) == 1 and "Traceback" not in err
        assert f"the post-id hashes of {index} cannot be read" in lines[0] and f"verify {index}`" in lines[0]
        assert name in damaged_names(index)
    assert IndexDir(index).read_manifest() == before
