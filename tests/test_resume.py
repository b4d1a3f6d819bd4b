"""Interrupted builds resume without losing or duplicating posts."""

import dataclasses
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import index_contents, write_big_corpus, write_corpus

from hicl_retrieval import BuildConfig, HiclError, ReaderConfig, build_index
from hicl_retrieval.index.directory import IndexDir
from hicl_retrieval.index.manifest import BUILD_STATE, MANIFEST


@pytest.mark.slow
def test_kill_9_at_several_points_then_rerun_gives_the_uninterrupted_index(tmp_path, tiny_hashencoder):
    corpus = tmp_path / "posts.jsonl"
    total = 6000
    write_big_corpus(corpus, total)

    def command(out: Path) -> list[str]:
        return [sys.executable, "-m", "hicl_retrieval.cli", "build", str(corpus), "--out", str(out),
                "--encoder", str(tiny_hashencoder), "--pooling", "pooler", "--chunk-size", "32",
                "--threads", "1", "--quiet"]

    reference = tmp_path / "reference"
    subprocess.run(command(reference), check=True, capture_output=True)

    interrupted = tmp_path / "interrupted"
    row_bytes = 2 * 32  # float16 x the tiny model's 32 dimensions
    kills = 0
    for fraction in (0.05, 0.3, 0.55, 0.8, 0.97):
        process = subprocess.Popen(command(interrupted), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        vectors = interrupted / "seg-0.f16"
        while process.poll() is None:
            if vectors.exists() and vectors.stat().st_size >= fraction * total * row_bytes:
                process.send_signal(signal.SIGKILL)
                break
            time.sleep(0.002)
        process.wait()
        if process.returncode == -signal.SIGKILL and not (interrupted / MANIFEST).exists():
            kills += 1
            assert (interrupted / BUILD_STATE).exists()
    assert kills >= 4  # the build was really cut off, several times, at different points
    finished = subprocess.run(command(interrupted), capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    assert "resumed an interrupted build" in finished.stdout
    assert not (interrupted / BUILD_STATE).exists()

    ref_posts, ref_rejects, ref_stats = index_contents(reference)
    got_posts, got_rejects, got_stats = index_contents(interrupted)
    assert got_stats == ref_stats
    assert ref_stats["indexed"] == total and ref_stats["duplicates"] == 9
    assert got_posts.keys() == ref_posts.keys()
    for key, vector in ref_posts.items():
        np.testing.assert_allclose(got_posts[key], vector, atol=2e-3)
    assert got_rejects == ref_rejects


def test_a_failed_build_resumes_on_rerun_and_other_settings_are_refused(tiny_encoder, tmp_path, monkeypatch):
    from hicl_retrieval.workflows import build_steps

    corpus = tmp_path / "posts.jsonl"
    write_corpus(corpus)
    config = BuildConfig(encoder=tiny_encoder.config, progress=False, chunk_size=16)
    full = build_index([corpus], tmp_path / "full", config, encoder=tiny_encoder)
    out = tmp_path / "index"

    calls = []
    encode = tiny_encoder.encode

    def failing_encode(texts, **options):
        calls.append(len(texts))
        if len(calls) == 3:
            raise RuntimeError("stopped in the third chunk")
        return encode(texts, **options)

    monkeypatch.setattr(tiny_encoder, "encode", failing_encode)
    with pytest.raises(RuntimeError, match="third chunk"):
        build_index([corpus], out, config, encoder=tiny_encoder)
    monkeypatch.undo()
    assert (out / BUILD_STATE).exists() and not (out / MANIFEST).exists()
    with pytest.raises(HiclError, match="holds a build that did not finish"):
        IndexDir(out).read_manifest()

    def failing_index(*args):
        raise RuntimeError("stopped while building the FAISS index")

    monkeypatch.setattr(build_steps, "trained_index", failing_index)
    with pytest.raises(RuntimeError, match="FAISS"):
        build_index([corpus], out, config, encoder=tiny_encoder)  # resumes, then fails at the end
    monkeypatch.undo()

    other = BuildConfig(encoder=tiny_encoder.config, progress=False, reader=ReaderConfig(max_record_bytes=4096))
    with pytest.raises(HiclError, match="reader"):
        build_index([corpus], out, other, encoder=tiny_encoder)
    # The index type is chosen at the end, from the stored vectors: another one may finish the build.
    hnsw = dataclasses.replace(config, faiss_factory="HNSW8")
    resumed = build_index([corpus], out, hnsw, encoder=tiny_encoder)
    assert resumed.resumed and IndexDir(out).read_manifest().faiss_factory == "IDMap2,HNSW8"
    assert (resumed.read, resumed.indexed, resumed.duplicates, dict(resumed.rejected)) == (
        full.read, full.indexed, full.duplicates, dict(full.rejected)
    )
    got, want = index_contents(out), index_contents(tmp_path / "full")
    assert got[0].keys() == want[0].keys() and got[1:] == want[1:]


def test_a_resumed_build_skips_what_it_read_without_parsing_it(tiny_encoder, tmp_path, monkeypatch):
    """The ledger records the file and line reading got to: a resumption skips the files before it and reads past
    the lines before it. Proof: those are blanked (byte for byte, times kept: a blank JSON line is no record)
    before resuming, and the index still equals an uninterrupted build's."""
    import json
    import os

    from hicl_retrieval.index.store import PostStore

    files = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    for number, path in enumerate(files):
        path.write_text("".join(json.dumps({"id": f"{number}-{i}", "text": f"post {i} of file {number} #f{number}"})
                                + "\n" for i in range(200)))
    config = BuildConfig(encoder=tiny_encoder.config, progress=False, chunk_size=16)
    build_index(files, tmp_path / "full", config, encoder=tiny_encoder)
    out = tmp_path / "index"
    calls = []
    encode = tiny_encoder.encode

    def failing_encode(texts, **options):
        calls.append(len(texts))
        if len(calls) == 20:  # in b.jsonl
            raise RuntimeError("stopped in the twentieth chunk")
        return encode(texts, **options)

    monkeypatch.setattr(tiny_encoder, "encode", failing_encode)
    with pytest.raises(RuntimeError, match="twentieth"):
        build_index(files, out, config, encoder=tiny_encoder)
    monkeypatch.undo()
    with PostStore(out / "seg-0.duckdb", read_only=True) as store:
        records, source, line, taken, in_file = json.loads(store.ledger()[-1].stats)["point"]
    assert (records, Path(source).name, line, taken) == (304, "b.jsonl", 104, 1)
    for path, blanked in ((files[0], 200), (files[1], line - 1)):
        stat = path.stat()
        lines = path.read_bytes().split(b"\n")
        path.write_bytes(b"\n".join([b" " * len(text) for text in lines[:blanked]] + lines[blanked:]))
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    resumed = build_index(files, out, config, encoder=tiny_encoder)
    assert resumed.resumed and resumed.read == 400 and not resumed.rejected
    got, want = index_contents(out), index_contents(tmp_path / "full")
    assert got[0].keys() == want[0].keys() and got[1:] == want[1:]
