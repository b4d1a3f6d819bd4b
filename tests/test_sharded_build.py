"""Parallel builds: shards keep true lines, and N workers (interrupted or not) build the index one process builds."""

import csv
import dataclasses
import gzip
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import index_contents, write_big_corpus
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hicl_retrieval import BuildConfig, HiclError, ReaderConfig, Retriever, add_posts, build_index
from hicl_retrieval.corpus import CorpusFile, Post, read_file
from hicl_retrieval.corpus.shards import ReadPoint, Shard, plan_shards, read_shard
from hicl_retrieval.index.manifest import MANIFEST

LINE = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\x00"), max_size=40),
    st.just(""),  # blank lines count as lines
    st.just("{broken"),
    st.text(alphabet="ab #", min_size=60, max_size=160),  # longer than max_record_bytes below
)


def _records(records) -> list[tuple]:
    return [(type(r).__name__, r.source, r.line, r.text if isinstance(r, Post) else r.reason) for r in records]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(LINE, min_size=1, max_size=60), size=st.integers(1, 300), json_lines=st.booleans(),
       compressed=st.booleans(), last_newline=st.booleans())
def test_shards_cut_at_line_boundaries_read_every_record_of_the_file_at_its_true_line(
        tmp_path_factory, lines, size, json_lines, compressed, last_newline):
    folder = tmp_path_factory.mktemp("shards")
    if json_lines:
        lines = [line if line in ("", "{broken") else json.dumps({"id": str(i), "text": line})
                 for i, line in enumerate(lines)]
    data = ("\n".join(lines) + ("\n" if last_newline else "")).encode("utf-8")
    path = folder / ("posts.jsonl" if json_lines else "posts.txt")
    path.write_bytes(gzip.compress(data) if compressed else data)
    config = ReaderConfig(max_record_bytes=70)
    file = CorpusFile(path, "jsonl" if json_lines else "text")
    shards = plan_shards([file], size, config)
    if compressed:
        assert shards == [Shard((file,))]  # a compressed stream cannot be entered in the middle
    else:
        assert [shard.start for shard in shards] == sorted({shard.start for shard in shards})
        for shard, following in zip(shards, shards[1:]):
            assert shard.end == following.start and data[following.start - 1 : following.start] == b"\n"
            assert following.first_line == data[: following.start].count(b"\n") + 1
    whole = _records(read_file(path, file.format, config))
    assert [record for shard in shards for record in _records(read_shard(shard, config))] == whole


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.one_of(LINE, st.lists(st.text(alphabet="ab #", max_size=6), min_size=2, max_size=4)),
                      min_size=1, max_size=40),
       size=st.integers(1, 300), fmt=st.sampled_from(["text", "jsonl", "csv"]), compressed=st.booleans(),
       chunk=st.integers(1, 7), stop=st.integers(0, 200), files=st.integers(1, 3))
def test_a_resumed_shard_reads_on_from_the_record_after_its_read_point(
        tmp_path_factory, lines, size, fmt, compressed, chunk, stop, files):
    """Resuming, a shard reads on from its read point: the files before it not at all, the lines of its file
    before it read past, not parsed; every record after it comes back once, a JSON line of several posts (a v2
    response) cut between chunks included, and small files grouped into one shard too (a CSV file, read whole,
    is read again up to the point)."""
    folder = tmp_path_factory.mktemp("resume")
    if fmt == "jsonl":
        lines = [line if line in ("", "{broken") else
                 json.dumps({"data": [{"id": str(j), "text": text or "x"} for j, text in enumerate(line)]},
                            separators=(",", ":"))
                 if isinstance(line, list) else json.dumps({"id": str(i), "text": line})
                 for i, line in enumerate(lines)]
    else:
        lines = [" ".join(line) if isinstance(line, list) else line for line in lines]
    corpus = []
    for number in range(files):
        if fmt == "csv":
            rows = io.StringIO()
            csv.writer(rows).writerows([("id", "text"), *((i, line) for i, line in enumerate(lines[number::files]))])
            data = rows.getvalue().encode("utf-8")
        else:
            data = ("\n".join(lines[number::files]) + "\n").encode("utf-8")
        path = folder / f"posts{number}.{'txt' if fmt == 'text' else fmt}"
        path.write_bytes(gzip.compress(data) if compressed else data)
        corpus.append(CorpusFile(path, fmt))
    config = ReaderConfig(max_record_bytes=150)
    shards = plan_shards(corpus, size, config)
    whole = [record for file in corpus for record in read_file(file.path, file.format, config)]
    assert _records(record for shard in shards for record in read_shard(shard, config)) == _records(whole)
    for shard in shards:
        records = list(read_shard(shard, config))
        consumed = stop % (len(records) + 1)
        point = ReadPoint()
        for start in range(0, consumed, chunk):
            point = point.after(records[start:min(start + chunk, consumed)])
        assert point.records == consumed
        assert _records(read_shard(shard, config, point)) == _records(records[consumed:])


SMALL_RECORDS = ReaderConfig(max_record_bytes=4096)
"""Files longer than this may be cut into shards (a shorter one may be one JSON object over many lines)."""


def _corpus(root: Path) -> list[Path]:
    """A big file (cut into shards) with bad lines and repeated post ids, and a second file repeating post ids of
    the first (the first in corpus order must be kept) and holding a bad line."""
    write_big_corpus(root / "a.jsonl", 2400)
    again = [json.dumps({"id": str(i), "text": f"the post {i} again"}) for i in range(0, 2400, 300)]
    (root / "b.jsonl").write_text("\n".join([*again, "not json", ""]) + "\n", encoding="utf-8")
    return [root / "a.jsonl", root / "b.jsonl"]


def _assert_same_index(reference: Path, got: Path) -> None:
    ref_posts, ref_rejects, ref_stats = index_contents(reference)
    got_posts, got_rejects, got_stats = index_contents(got)
    assert got_stats == ref_stats
    assert got_posts.keys() == ref_posts.keys()
    for key, vector in ref_posts.items():
        np.testing.assert_allclose(got_posts[key], vector, atol=2e-3)
    assert got_rejects == ref_rejects


def test_two_workers_build_the_index_one_process_builds(tmp_path, tiny_encoder):
    files = _corpus(tmp_path)
    base = BuildConfig(encoder=tiny_encoder.config, faiss_factory="flat", chunk_size=256, progress=False,
                       reader=SMALL_RECORDS)
    one = build_index(files, tmp_path / "one", dataclasses.replace(base, workers=1), encoder=tiny_encoder)
    two = build_index(files, tmp_path / "two", dataclasses.replace(base, workers=2, shard_bytes=30_000),
                      encoder=tiny_encoder)
    assert "2 worker processes" in two.encoded_on and "worker" not in one.encoded_on
    assert two.duplicates == one.duplicates == 4 + 8  # within a shard, and across shards and files
    _assert_same_index(tmp_path / "one", tmp_path / "two")
    names = {path.name for path in (tmp_path / "two").iterdir()}
    assert len([name for name in names if name.endswith(".duckdb")]) >= 4  # one segment a shard
    assert not [name for name in names if "rejects.jsonl" in name and name != "rejects.jsonl"]
    assert "shards.json" not in names and "build.json" not in names
    rejects = [json.loads(line) for line in (tmp_path / "two" / "rejects.jsonl").read_text().splitlines()]
    assert {(Path(r["source"]).name, r["reason"]) for r in rejects if r["line"] == 9} == {("b.jsonl", "bad_json")}
    with Retriever(tmp_path / "one", encoder=tiny_encoder) as first, \
            Retriever(tmp_path / "two", encoder=tiny_encoder) as second:
        for query in ("flood story 12 from reporter", "the post 600 again", "election"):
            ours, theirs = first.search(query, k=10)[0].hits, second.search(query, k=10)[0].hits
            assert [hit.post_id for hit in theirs] == [hit.post_id for hit in ours]
            np.testing.assert_allclose([h.score for h in theirs], [h.score for h in ours], atol=1e-5)


def test_a_dump_of_many_small_files_makes_a_few_segments(tmp_path, tiny_encoder):
    """Small files are grouped into shards, not a segment a file; each keeps its lines, and its own time warning."""
    files = []
    for day in range(24):
        files.append(tmp_path / f"day{day:02d}.jsonl")
        times = ["yesterday at noon"] * 40 if day == 5 else [f"2020-03-{day + 1:02d}T10:00:00Z"] * 40
        files[-1].write_text("".join(json.dumps({"id": f"{day}-{i}", "text": f"post {i} of day {day}",
                                                 "created_at": when}) + "\n" for i, when in enumerate(times)))
    base = BuildConfig(encoder=tiny_encoder.config, faiss_factory="flat", chunk_size=32, progress=False)
    one = build_index(files, tmp_path / "one", dataclasses.replace(base, workers=1), encoder=tiny_encoder)
    size = sum(path.stat().st_size for path in files) // 4
    two = build_index(files, tmp_path / "two", dataclasses.replace(base, workers=2, shard_bytes=size),
                      encoder=tiny_encoder)
    _assert_same_index(tmp_path / "one", tmp_path / "two")
    assert 4 <= len(json.loads((tmp_path / "two" / MANIFEST).read_text())["segments"]) <= 5
    assert two.warnings == one.warnings and len(one.warnings) == 1 and "day05.jsonl" in one.warnings[0]


def test_two_workers_add_what_one_process_adds(tmp_path, tiny_encoder):
    """An add by two workers (a segment a shard) skips the post ids the index holds, keeps a post id repeated across
    shards once (the first in corpus order), and rejects as one process does: the same index, the same answers."""
    files = _corpus(tmp_path)
    held = tmp_path / "held.jsonl"
    held.write_text("".join(json.dumps({"id": str(i), "text": f"held post {i}"}) + "\n" for i in range(0, 2400, 7)))
    config = BuildConfig(encoder=tiny_encoder.config, faiss_factory="flat", chunk_size=256, progress=False)
    build_index([held], tmp_path / "one", config, encoder=tiny_encoder)
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    options = {"reader": SMALL_RECORDS, "chunk_size": 256, "progress": False}
    one = add_posts(tmp_path / "one", files, workers=1, **options)
    two = add_posts(tmp_path / "two", files, workers=2, shard_bytes=30_000, **options)
    assert (two.read, two.added, two.known, two.rejected) == (one.read, one.added, one.known, one.rejected)
    assert one.known == 343 + 4 + 8  # held, then repeated within a shard, and across shards and files
    _assert_same_index(tmp_path / "one", tmp_path / "two")
    manifest = json.loads((tmp_path / "two" / MANIFEST).read_text())
    assert len(manifest["segments"]) >= 4 and manifest["stats"]["added"] == one.added
    assert not [path for path in (tmp_path / "two").iterdir() if path.name.endswith(".rejects.jsonl")]
    with Retriever(tmp_path / "one", encoder=tiny_encoder) as first, \
            Retriever(tmp_path / "two", encoder=tiny_encoder) as second:
        for query in ("flood story 12 from reporter", "the post 600 again", "held post 14"):
            ours, theirs = first.search(query, k=10)[0].hits, second.search(query, k=10)[0].hits
            assert [hit.post_id for hit in theirs] == [hit.post_id for hit in ours]
    names = sorted(path.name for path in (tmp_path / "two").iterdir())
    rejects = (tmp_path / "two" / "rejects.jsonl").read_bytes()
    again = add_posts(tmp_path / "two", files, workers=2, shard_bytes=30_000, **options)
    assert (again.added, again.known) == (0, one.added + one.known)  # every post id held: the index unchanged
    assert sorted(path.name for path in (tmp_path / "two").iterdir()) == names
    assert (tmp_path / "two" / "rejects.jsonl").read_bytes() == rejects


def test_an_ivf_index_built_by_two_workers_answers_as_one_built_in_one_process(tmp_path, tiny_encoder):
    """The training sample is drawn by position among the posts in corpus order, as in one process: the same
    centroids, so the same lists, the same tuned nprobe and the same answers."""
    files = _corpus(tmp_path)
    base = BuildConfig(encoder=tiny_encoder.config, faiss_factory="IVF8,Flat", chunk_size=256, progress=False,
                       reader=SMALL_RECORDS)
    build_index(files, tmp_path / "one", dataclasses.replace(base, workers=1), encoder=tiny_encoder)
    build_index(files, tmp_path / "two", dataclasses.replace(base, workers=2, shard_bytes=30_000),
                encoder=tiny_encoder)
    first, second = (json.loads((tmp_path / name / MANIFEST).read_text()) for name in ("one", "two"))
    assert first["search_params"] == second["search_params"] and first["tuning"] == second["tuning"]
    with Retriever(tmp_path / "one", encoder=tiny_encoder) as one, \
            Retriever(tmp_path / "two", encoder=tiny_encoder) as two:
        for query in ("flood story 12 from reporter", "the post 600 again", "election", "storm damage"):
            ours, theirs = one.search(query, k=10)[0].hits, two.search(query, k=10)[0].hits
            assert [hit.post_id for hit in theirs] == [hit.post_id for hit in ours]


def _command(files: list[Path], out: Path, model: Path, workers: int) -> list[str]:
    return [sys.executable, "-m", "hicl_retrieval.cli", "build", *map(str, files), "--out", str(out), "--encoder",
            str(model), "--index", "flat", "--chunk-size", "64", "--workers", str(workers), "--shard-bytes", "30000",
            "--max-record-bytes", str(SMALL_RECORDS.max_record_bytes), "--quiet"]


@pytest.mark.slow
def test_kill_9_of_the_driver_or_of_a_worker_then_rerun_gives_the_one_process_index(tmp_path, tiny_hashencoder):
    files = _corpus(tmp_path)
    reference = tmp_path / "reference"
    subprocess.run(_command(files, reference, tiny_hashencoder, 1), check=True, capture_output=True)
    out = tmp_path / "interrupted"
    total = 2400 * 2 * 32  # posts x float16 x the tiny model's 32 dimensions

    def run_until(fraction: float, workers: int) -> subprocess.Popen:
        process = subprocess.Popen(_command(files, out, tiny_hashencoder, workers), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
        while process.poll() is None and sum(path.stat().st_size for path in out.glob("seg-s*.f16")) < fraction * total:
            time.sleep(0.005)
        assert process.poll() is None, f"the build ended before {fraction:.0%} was written: {process.stderr.read()}"
        return process

    # the driver killed with two workers, then with one (a resumption keeps the shards it began with)
    for fraction, workers in ((0.25, 2), (0.5, 1)):
        process = run_until(fraction, workers)
        spawned = _workers(process.pid)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert not (out / MANIFEST).exists() and (out / "shards.json").exists()
        time.sleep(0.5)
        assert not [pid for pid in spawned if _running(pid)]  # no orphan goes on writing
    # a worker killed: the driver redoes its shard and finishes
    process = run_until(0.75, 2)
    os.kill(_workers(process.pid)[0], signal.SIGKILL)
    assert process.wait() == 0, process.stderr.read()
    _assert_same_index(reference, out)
    assert not list(out.glob("seg-s*.rejects.jsonl")) and not (out / "shards.json").exists()


def _running(pid: int) -> bool:
    """Whether the process `pid` exists and is not a zombie (one killed, not yet reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _workers(pid: int) -> list[int]:
    """The worker processes of the build `pid` (spawned multiprocessing children)."""
    found = []
    for _ in range(400):
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid \
                        and b"spawn_main" in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
        if found:
            return found
        time.sleep(0.01)
    return found


@pytest.mark.slow
def test_on_a_ray_cluster_workers_read_their_shards_and_one_killed_is_replaced(tmp_path, tiny_hashencoder):
    """kill -9 of the driver, then of an actor in the same command run again: the one-process index."""
    pytest.importorskip("ray", reason="install the [ray] extra: pip install 'hicl-retrieval[ray]'")
    files = _corpus(tmp_path)
    reference = tmp_path / "reference"
    subprocess.run(_command(files, reference, tiny_hashencoder, 1), check=True, capture_output=True)
    out = tmp_path / "ray"
    ray_command = [*_command(files, out, tiny_hashencoder, 2), "--ray", "local", "--ray-cpus", "2", "--threads", "1"]
    process = subprocess.Popen(ray_command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while process.poll() is None and sum(path.stat().st_size for path in out.glob("seg-s*.f16")) < 0.2 * 2400 * 2 * 32:
        time.sleep(0.005)
    assert process.poll() is None, f"the build ended before it could be killed: {process.stderr.read()}"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / MANIFEST).exists() and (out / "shards.json").exists()
    for _ in range(300):  # the local cluster and its actors go with their driver
        if not subprocess.run(["pgrep", "-f", "ray::JobWorker"], capture_output=True).stdout:
            break
        time.sleep(0.1)
    assert not subprocess.run(["pgrep", "-f", "ray::JobWorker"], capture_output=True).stdout
    process = subprocess.Popen(ray_command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    while process.poll() is None and killed is None:
        if sum(path.stat().st_size for path in out.glob("seg-s*.f16")) >= 0.4 * 2400 * 2 * 32:
            found = subprocess.run(["pgrep", "-f", "ray::JobWorker"], capture_output=True, text=True).stdout.split()
            if found:
                killed = int(found[0])
                os.kill(killed, signal.SIGKILL)
        time.sleep(0.005)
    stdout, stderr = process.communicate()
    assert process.returncode == 0, stderr
    assert killed is not None, "the build ended before a worker could be killed"
    assert "Ray: 2 worker(s) of 1 threads" in stdout, stdout
    _assert_same_index(reference, out)


def test_a_parallel_build_of_nothing_but_bad_lines_fails_in_one_line_and_leaves_nothing(tmp_path, tiny_encoder):
    files = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    for number, path in enumerate(files):
        path.write_text("".join(f"{{broken {number} {line}\n" for line in range(50)), encoding="utf-8")
    config = BuildConfig(encoder=tiny_encoder.config, workers=2, progress=False)
    with pytest.raises(HiclError, match=r"no post indexed: all 100 records were rejected \(bad_json 100\); the first: "
                                        r".*a\.jsonl line 1"):
        build_index(files, tmp_path / "index", config, encoder=tiny_encoder)
    assert not (tmp_path / "index").exists()


def test_a_file_the_json_reader_reads_as_one_object_is_never_cut(tmp_path):
    path = tmp_path / "response.json"
    path.write_text(json.dumps({"data": [{"id": str(i), "text": f"post {i}"} for i in range(300)]}, indent=2))
    file = CorpusFile(path, "jsonl")
    assert plan_shards([file], 100) == [Shard((file,))]
    assert len(plan_shards([file], 100, ReaderConfig(max_record_bytes=1000))) > 2  # too long for one object
