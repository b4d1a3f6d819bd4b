"""An index of segments: after any adds, deletes and compactions it answers as a fresh build of the same posts."""

import json
import shutil
from datetime import datetime

import faiss
import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import TOPICS, drawn_png

from hicl_retrieval import BuildConfig, Filter, HiclError, Retriever, add_posts, build_index, compact, delete_posts
from hicl_retrieval.cli import main
from hicl_retrieval.index.directory import IndexDir
from hicl_retrieval.index.faiss_index import VectorIndex
from hicl_retrieval.index.filters import Condition
from hicl_retrieval.index.manifest import MANIFEST, WRITE_LOCK
from hicl_retrieval.index.store import PostRow, PostStore
from hicl_retrieval.workflows.export import export_index

QUERIES = ["river flooding downtown", "election results tonight", "phone launch event", "match final score"]


def post(i, tag_every=97):
    return {"id": f"p{i}", "text": f"{TOPICS[i % 5]} note {i} #topic{i % 5}" + (" #rare" if i % tag_every == 0 else ""),
            "author": f"user{i % 7}", "created_at": f"2024-05-{1 + i % 28:02d}T10:00:00Z"}


def write(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def hits(path, encoder, **options):
    """(post ids, scores) of each query's hits."""
    with Retriever(path, encoder=encoder) as retriever:
        results = retriever.search(QUERIES, k=10, dedupe=False, **options)
    return [[h.post_id for h in r.hits] for r in results], np.array([[h.score for h in r.hits] for r in results])


def exported(path, tmp_path):
    """post id -> (text, author, vector) of every live post, read through `export`."""
    out = tmp_path / f"{path.name}-export.parquet"
    export_index(path, out, vectors=True)
    table = pq.read_table(out).to_pylist()
    return {row["post_id"]: (row["text"], row["author"], np.array(row["vector"])) for row in table}


def same_posts(got, want):
    assert got.keys() == want.keys()
    for key, (text, author, vector) in want.items():
        assert got[key][:2] == (text, author)
        np.testing.assert_allclose(got[key][2], vector, atol=2e-3)


def only_named_files(path):
    manifest = IndexDir(path).read_manifest()
    return {p.name for p in path.iterdir()} - {MANIFEST, WRITE_LOCK} == set(manifest.files)


def changed_index(tmp_path, encoder, factory="Flat", first=400, batches=4, size=60):
    """An index built from `first` posts, then `batches` adds of `size` (a segment each) and deletes between them;
    the rows of the posts it should hold, in the order a fresh build would number them."""
    config = BuildConfig(encoder=encoder.config, progress=False, faiss_factory=factory)
    rows = [post(i) for i in range(first)]
    path = tmp_path / f"changed-{factory}"
    build_index([write(tmp_path / "base.jsonl", rows)], path, config, encoder=encoder)
    live = list(rows)
    for batch in range(batches):
        start = first + batch * size
        new = [post(i) for i in range(start, start + size)]
        add_posts(path, [write(tmp_path / f"add{batch}.jsonl", new)], encoder=encoder, progress=False)
        live += new
        doomed = {row["id"] for row in live[batch * 7 : batch * 7 + 5]}
        assert delete_posts(path, post_ids=sorted(doomed)) == len(doomed)
        live = [row for row in live if row["id"] not in doomed]
    # deleted, then added again: it comes back as a new post at the end
    again = [post(3)]
    add_posts(path, [write(tmp_path / "again.jsonl", again)], encoder=encoder, progress=False)
    live += again
    fresh = tmp_path / f"fresh-{factory}"
    build_index([write(tmp_path / "live.jsonl", live)], fresh, config, encoder=encoder)
    return path, fresh, live


def test_a_changed_flat_index_answers_as_a_fresh_build_before_and_after_compacting(tmp_path, tiny_encoder):
    path, fresh, live = changed_index(tmp_path, tiny_encoder)
    manifest = IndexDir(path).read_manifest()
    assert len(manifest.segments) == 6 and manifest.deleted == 20 and manifest.count == len(live)
    want_ids, want_scores = hits(fresh, tiny_encoder)
    for stage in ("segments", "compacted"):
        got_ids, got_scores = hits(path, tiny_encoder)
        assert got_ids == want_ids, stage
        np.testing.assert_allclose(got_scores, want_scores, atol=1e-3)
        same_posts(exported(path, tmp_path), exported(fresh, tmp_path))
        compact(path)
    manifest = IndexDir(path).read_manifest()
    assert len(manifest.segments) == 1 and not manifest.deletions and only_named_files(path)
    # ids are kept by compaction and never reused: the re-added post has an id past every earlier one
    with Retriever(path, encoder=tiny_encoder) as retriever:
        (result,) = retriever.search(post(3)["text"], k=1, dedupe=False)
    assert result.hits[0].post_id == "p3" and result.hits[0].id == 400 + 4 * 60


def test_many_segments_searched_with_filters_keep_k_hits(tmp_path, tiny_encoder):
    path, fresh, live = changed_index(tmp_path, tiny_encoder, first=150, batches=9, size=25)
    assert len(IndexDir(path).read_manifest().segments) == 11
    rare = sum("#rare" in row["text"] for row in live)
    for where in (Filter.of(Condition("hashtag", "has", "#topic2")),
                  Filter.of(Condition("author", "in", ["user1", "user4"]), Condition("hashtag", "lacks", "#topic0")),
                  Filter.of(Condition("hashtag", "has", "#rare"))):
        got_ids, got_scores = hits(path, tiny_encoder, filter=where)
        want_ids, want_scores = hits(fresh, tiny_encoder, filter=where)
        assert got_ids == want_ids
        assert all(len(ids) == min(10, rare if "#rare" in str(where) else 10) for ids in got_ids)
        np.testing.assert_allclose(got_scores, want_scores, atol=1e-3)
    assert main(["info", str(path)]) == 0


@pytest.mark.parametrize("factory", ["IVF16,PQ8", "IVF16,PQ16x4fs"])  # 8-bit codes, and auto's 4-bit fast-scan ones
def test_an_ivf_pq_index_keeps_its_recall_through_changes(tmp_path, tiny_encoder, factory):
    path, fresh, live = changed_index(tmp_path, tiny_encoder, factory=factory, first=2400, batches=3, size=200)
    assert "IVF" in IndexDir(path).read_manifest().faiss_factory
    exact = tmp_path / "exact"
    build_index([tmp_path / "live.jsonl"], exact, BuildConfig(encoder=tiny_encoder.config, progress=False),
                encoder=tiny_encoder)
    with Retriever(exact, encoder=tiny_encoder) as retriever:
        queries = [row["text"] for row in live[::11]]
        truth = [{h.post_id for h in r.hits} for r in retriever.search(queries, k=10, dedupe=False)]

    def recall(index):
        with Retriever(index, encoder=tiny_encoder) as retriever:
            found = [{h.post_id for h in r.hits} for r in retriever.search(queries, k=10, dedupe=False)]
        return np.mean([len(f & t) / 10 for f, t in zip(found, truth)])

    fresh_recall, segments_recall = recall(fresh), recall(path)
    compact(path)
    compacted_recall = recall(path)
    print(f"recall@10: fresh {fresh_recall:.3f}, segments {segments_recall:.3f}, compacted {compacted_recall:.3f}")
    assert segments_recall >= fresh_recall - 0.01 and compacted_recall >= fresh_recall - 0.01
    assert fresh_recall >= 0.85  # far above chance (the tiny model's 32 dims cut in 4-bit codes of 2)


def test_fast_scan_parts_merged_when_opened_answer_as_their_shards(tmp_path, tiny_encoder):
    path, _, live = changed_index(tmp_path, tiny_encoder, factory="IVF16,PQ16x4fs", first=1200, batches=3, size=150)
    directory = IndexDir(path)
    manifest = directory.read_manifest()
    assert len(manifest.segments) == 5 and manifest.deleted == 15
    merged = directory.open_faiss(manifest)
    assert merged.size == manifest.count + manifest.deleted and merged.is_fast_scan
    assert not isinstance(merged.index, faiss.IndexShards)  # one index: one list scanned a probe, not one a part
    parts = [VectorIndex.load(directory.file(s.faiss_file), search_params=manifest.search_params)
             for s in manifest.segments]
    shards = faiss.IndexShards(manifest.dim, False, False)
    for part in parts:
        shards.add_shard(part.index)
    queries = tiny_encoder.encode([row["text"] for row in live[::13]])
    deleted = directory.deleted_ids(manifest)
    selector = faiss.IDSelectorNot(faiss.IDSelectorBatch(deleted))
    merged.set_search_params({"nprobe": 16})  # every list: each part's code comes into the top 20 or not
    params = faiss.SearchParametersIVF(sel=selector, nprobe=16)
    want_scores, want_ids = shards.search(queries, 20, params=params)
    got_scores, got_ids = merged.search(queries, 20)
    assert not np.isin(got_ids, deleted).any() and (got_ids >= 0).all()
    np.testing.assert_allclose(got_scores, want_scores, rtol=1e-5)
    for got, want, scores in zip(got_ids, want_ids, want_scores):  # equal scores may come in another order
        above = scores > scores[-1] + 1e-5  # those not tied with the last one in
        assert set(got[above]) == set(want[above])


def test_fast_scan_parts_that_do_not_fit_together_are_refused_in_one_line(tmp_path, tiny_encoder):
    path, _, _ = changed_index(tmp_path, tiny_encoder, factory="IVF16,PQ16x4fs", first=600, batches=1, size=100)
    other, _, _ = changed_index(tmp_path, tiny_encoder, factory="IVF16,PQ8x4fs", first=600, batches=1, size=100)
    name = IndexDir(path).read_manifest().segments[1].faiss_file
    shutil.copy(IndexDir(other).file(IndexDir(other).read_manifest().segments[1].faiss_file), IndexDir(path).file(name))
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["files"][name] = IndexDir(path).file(name).stat().st_size  # damage its size does not show
    (path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(HiclError) as caught:
        Retriever(path, encoder=tiny_encoder).search("river flooding downtown", k=5)
    assert str(caught.value).startswith(f"the FAISS parts of {path} do not fit together (")
    assert str(caught.value).endswith(f"run `hicl-retrieval verify {path}`") and "\n" not in str(caught.value)


def test_export_writes_every_live_post_as_parquet_or_json_lines(tmp_path, tiny_encoder, capsys):
    rows = [post(i) for i in range(40)]
    path = tmp_path / "index"
    build_index([write(tmp_path / "a.jsonl", rows)], path, BuildConfig(encoder=tiny_encoder.config, progress=False),
                encoder=tiny_encoder)
    delete_posts(path, post_ids=["p5", "p6"])
    assert main(["export", str(path), "--out", str(tmp_path / "posts.jsonl")]) == 0
    assert "38 posts" in capsys.readouterr().out
    lines = [json.loads(line) for line in (tmp_path / "posts.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [line["post_id"] for line in lines] == [row["id"] for row in rows if row["id"] not in ("p5", "p6")]
    assert lines[0]["created_at"] == "2024-05-01T10:00:00" and lines[0]["hashtags"] == ["#topic0", "#rare"]
    assert "vector" not in lines[0]
    assert main(["export", str(path), "--out", str(tmp_path / "posts.parquet"), "--vectors"]) == 0
    table = pq.read_table(tmp_path / "posts.parquet")
    assert table.num_rows == 38 and len(table.column("vector")[0]) == tiny_encoder.dim
    vector = np.array(table.column("vector")[0].as_py())
    np.testing.assert_allclose(vector, tiny_encoder.encode([rows[0]["text"]])[0], atol=2e-3)
    assert main(["export", str(path), "--out", str(tmp_path / "posts.csv")]) == 1
    assert ".parquet, .jsonl" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_an_export_read_back_keeps_its_post_ids_and_adding_it_adds_nothing(tmp_path, tiny_encoder, suffix):
    rows = [post(i) for i in range(30)] + [{"id_str": "900", "text": "RT @user1: river note", "created_at":
                                            "Wed May 01 10:00:00 +0000 2024", "user": {"screen_name": "rt_user"},
                                            "retweeted_status": {"id_str": "p1", "text": "river note"}}]
    config = BuildConfig(encoder=tiny_encoder.config, progress=False)
    path = tmp_path / "index"
    build_index([write(tmp_path / "a.jsonl", rows)], path, config, encoder=tiny_encoder)
    export_index(path, tmp_path / f"export{suffix}")

    def posts(index):
        with IndexDir(index).open_store(IndexDir(index).read_manifest()) as store:
            return store.con.execute("SELECT post_id, text, author, created_at, retweet_of, hashtags FROM posts "
                                     "ORDER BY id").fetchall()

    build_index([tmp_path / f"export{suffix}"], tmp_path / "again", config, encoder=tiny_encoder)
    assert posts(tmp_path / "again") == posts(path)
    assert posts(path)[-1][:5] == ("900", "river note", "rt_user", datetime(2024, 5, 1, 10), "p1")
    report = add_posts(path, [tmp_path / f"export{suffix}"], encoder=tiny_encoder, progress=False)
    assert (report.read, report.added, report.known) == (31, 0, 31)
    assert posts(path) == posts(tmp_path / "again")


def test_info_shows_segments_deleted_rows_and_when_compacting_pays(tmp_path, tiny_encoder, capsys):
    rows = [post(i) for i in range(50)]
    path = tmp_path / "index"
    build_index([write(tmp_path / "a.jsonl", rows)], path, BuildConfig(encoder=tiny_encoder.config, progress=False),
                encoder=tiny_encoder)
    add_posts(path, [write(tmp_path / "b.jsonl", [post(i) for i in range(50, 60)])], encoder=tiny_encoder,
              progress=False)
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "segments    2: seg-0 (50 posts" in out and "compacting does not pay yet" in out
    deleted = delete_posts(path, filter=Filter.of(Condition("author", "in", ["user1", "user2", "user3"])))
    assert deleted == sum(i % 7 in (1, 2, 3) for i in range(60))
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"deleted     {deleted} rows not compacted yet" in out
    assert f"compact pays: {100 * deleted / 60:.0f}% of the rows are deleted" in out


def test_info_plot_draws_the_shape_the_stats_give(tmp_path, tiny_encoder, capsys):
    pytest.importorskip("matplotlib", reason="install the plot extra: pip install 'hicl-retrieval[plot]'")
    from hicl_retrieval.index.stats import index_stats

    rows = [{**post(i), "created_at": f"{2023 + i // 24}-{1 + i % 12:02d}-{1 + i % 28:02d}T10:00:00Z"}
            for i in range(48)]  # two years: counted by month
    path = tmp_path / "index"
    build_index([write(tmp_path / "a.jsonl", rows)], path, BuildConfig(encoder=tiny_encoder.config, progress=False),
                encoder=tiny_encoder)
    add_posts(path, [write(tmp_path / "b.jsonl", [post(i) for i in range(50, 60)])], encoder=tiny_encoder,
              progress=False)
    delete_posts(path, filter=Filter.of(Condition("author", "in", ["user1"])))
    png = tmp_path / "shape.png"
    assert main(["info", str(path), "--plot", str(png)]) == 0
    assert capsys.readouterr().out.endswith(f"plot in {png}, its numbers in {png.with_suffix('.json')}\n")
    assert drawn_png(png) == (1100, 720)
    numbers = json.loads(png.with_suffix(".json").read_text())
    directory = IndexDir(path)
    manifest = directory.read_manifest()
    with directory.open_store(manifest) as store:
        stats = index_stats(directory, manifest, store)
    assert numbers == {"title": f"{path}: {stats['posts']} posts, {stats['posts']} with a time, 2023-01-01 to "
                                f"2024-12-20; {stats['deleted']} deleted rows in 2 segments", **stats}
    assert stats["unit"] == "month" and len(stats["over_time"]) == 24 and stats["deleted"] == 9
    assert [s["deleted"] for s in stats["segments"]] == [7, 2]
    assert main(["info", str(path), "--json", "--plot", str(png)]) == 0  # the JSON on stdout stays JSON
    assert json.loads(capsys.readouterr().out)["count"] == stats["posts"]
    assert main(["info", str(path), "--plot", str(tmp_path / "shape.svg")]) == 1
    assert capsys.readouterr().err.strip().endswith("--plot writes a PNG: name a .png file, not 'shape.svg'")


def write_format_1(path, encoder, rows):
    """An index as hicl-retrieval wrote it before segments: one post store, vectors by id, one FAISS file."""
    path.mkdir()
    vectors = encoder.encode([row["text"] for row in rows]).astype(np.float16)
    vectors.tofile(path / "vectors.f16")
    with PostStore(path / "posts.duckdb") as store:
        store.insert([PostRow(id=i, post_id=row["id"], text=row["text"], hashtags=[], author=row["author"],
                              created_at=None, retweet_of=None, dup_key=row["text"], source="a.jsonl", line=i + 1)
                      for i, row in enumerate(rows) if i != 2])  # post 2 was deleted: its vector stays
        store.checkpoint()
    index = VectorIndex.create(encoder.dim, "Flat")
    index.add(vectors.astype(np.float32), np.arange(len(rows)))
    index.save(path / "faiss.index")
    (path / "rejects.jsonl").write_bytes(b"")
    files = {name: (path / name).stat().st_size for name in ("vectors.f16", "posts.duckdb", "faiss.index",
                                                             "rejects.jsonl")}
    manifest = {"encoder": encoder.config.to_dict(), "dim": encoder.dim, "faiss_factory": "IDMap2,Flat",
                "count": len(rows) - 1, "vector_rows": len(rows), "faiss_file": "faiss.index", "k_factor": 1,
                "search_params": {}, "tuning": {}, "store_file": "posts.duckdb", "vectors_file": "vectors.f16",
                "stats": {"indexed": len(rows)}, "files": files, "created_at": "2025-01-01T00:00:00+00:00",
                "library_version": "0.1.0", "format_version": 1}
    (path / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")


def test_a_format_1_index_names_its_conversion_and_compact_converts_it(tmp_path, tiny_encoder, capsys):
    rows = [post(i) for i in range(30)]
    path = tmp_path / "old"
    write_format_1(path, tiny_encoder, rows)
    assert main(["query", str(path), "river flooding"]) == 1
    err = capsys.readouterr().err
    assert "index format 1" in err and f"`hicl-retrieval compact {path}`" in err and err.count("\n") == 1
    assert main(["compact", str(path)]) == 0
    manifest = IndexDir(path).read_manifest()
    assert manifest.format_version == 2 and manifest.count == 29 and manifest.next_id == 30
    assert not (path / "posts.duckdb").exists() and not (path / "vectors.f16").exists() and only_named_files(path)
    with Retriever(path, encoder=tiny_encoder) as retriever:
        (result,) = retriever.search(rows[7]["text"], k=3, dedupe=False)
    assert result.hits[0].post_id == "p7" and result.hits[0].id == 7 and result.hits[0].score > 0.999
    assert "p2" not in exported(path, tmp_path)


def test_add_and_delete_write_only_the_change(tmp_path, tiny_encoder):
    rows = [post(i) for i in range(300)]
    path = tmp_path / "index"
    build_index([write(tmp_path / "a.jsonl", rows)], path, BuildConfig(encoder=tiny_encoder.config, progress=False),
                encoder=tiny_encoder)
    before = {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in path.iterdir()}
    add_posts(path, [write(tmp_path / "b.jsonl", [post(i) for i in range(300, 310)])], encoder=tiny_encoder,
              progress=False)
    delete_posts(path, post_ids=["p1", "p2"])
    after = {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in path.iterdir()}
    changed = {name for name in after if before.get(name) != after[name]}
    manifest = IndexDir(path).read_manifest()
    new_segment = manifest.segments[1]
    assert changed == {MANIFEST, WRITE_LOCK, *new_segment.files, manifest.deletions[0].file}
    with pytest.raises(HiclError, match="post ids or a filter"):
        delete_posts(path)
    assert delete_posts(path, post_ids=["p1"]) == 0  # already deleted: nothing written
    assert IndexDir(path).read_manifest().deletions == manifest.deletions


def test_a_reader_keeps_its_index_through_a_delete_and_a_compaction(tmp_path, tiny_encoder):
    rows = [post(i) for i in range(100)]
    path = tmp_path / "index"
    build_index([write(tmp_path / "a.jsonl", rows)], path, BuildConfig(encoder=tiny_encoder.config, progress=False),
                encoder=tiny_encoder)
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    with Retriever(path, encoder=tiny_encoder) as reader:
        before = hits(copy, tiny_encoder)[0]
        assert [[h.post_id for h in r.hits] for r in reader.search(QUERIES, k=10, dedupe=False)] == before
        delete_posts(path, post_ids=[ids[0] for ids in before])
        compact(path)
        assert [[h.post_id for h in r.hits] for r in reader.search(QUERIES, k=10, dedupe=False)] == before
    assert all(ids[0] not in new for ids, new in zip(before, hits(path, tiny_encoder)[0]))


def _state(path, tmp_path):
    """The live posts (post id -> text) a reader of `path` sees, and how many segments and deletions it has."""
    manifest = IndexDir(path).read_manifest()
    posts = {key: value[0] for key, value in exported(path, tmp_path).items()}
    return posts, len(manifest.segments), len(manifest.deletions)


def _new_files(path, before):
    return [p for p in path.iterdir() if p.name not in before]


@pytest.mark.slow
@pytest.mark.parametrize("change", ["add", "delete", "compact"])
def test_kill_9_during_a_change_leaves_the_old_index_or_the_new_and_the_next_run_clears_it(
        change, tmp_path, tiny_encoder, tiny_hashencoder):
    import signal
    import subprocess
    import sys
    import time

    from hicl_retrieval.workflows.verify import verify_index

    base = tmp_path / "base"
    build_index([write(tmp_path / "a.jsonl", [post(i) for i in range(2000)])], base,
                BuildConfig(encoder=tiny_encoder.config, progress=False), encoder=tiny_encoder)
    if change == "compact":  # something to merge and drop
        add_posts(base, [write(tmp_path / "b.jsonl", [post(i) for i in range(2000, 2600)])], encoder=tiny_encoder,
                  progress=False)
        delete_posts(base, filter=Filter.of(Condition("author", "in", ["user1", "user2"])))
    extra = write(tmp_path / "more.jsonl", [post(i) for i in range(5000, 6500)])
    arguments = {"add": ["add", str(extra), "--chunk-size", "32", "--threads", "1", "--quiet"],
                 "delete": ["delete", "--author", "user3", "--post-id", "p10"], "compact": ["compact"]}[change]

    def command(index):
        return [sys.executable, "-m", "hicl_retrieval.cli", arguments[0], str(index), *arguments[1:]]

    reference = tmp_path / "reference"
    timings = []
    for run in range(2):  # the first run of a command may read its modules from a cold disk cache: the faster counts
        shutil.rmtree(reference, ignore_errors=True)
        shutil.copytree(base, reference)
        started = time.perf_counter()
        subprocess.run(command(reference), check=True, capture_output=True)
        timings.append(time.perf_counter() - started)  # the whole command, starting Python and loading the model
    seconds = min(timings)
    old, new = _state(base, tmp_path), _state(reference, tmp_path)
    assert old != new
    names = {p.name for p in base.iterdir()}
    expected_vectors = 1500 * tiny_encoder.dim * 2

    def started_writing(index):  # the change has begun writing files of its own
        fresh = _new_files(index, names)
        if change == "add":
            return any(p.suffix == ".f16" and p.stat().st_size >= fraction * expected_vectors for p in fresh)
        return any(p.name != WRITE_LOCK for p in fresh)

    killed_mid_change = 0
    for attempt, fraction in enumerate((0.05, 0.5, 0.8, 0.95, 1.0)):
        index = tmp_path / f"attempt{attempt}"
        shutil.copytree(base, index)
        launched = time.perf_counter()
        process = subprocess.Popen(command(index), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        while process.poll() is None:
            # a delete writes one small file: cut it off by time, near its end; the others once they write
            if (time.perf_counter() - launched >= (0.5 + fraction / 2) * seconds if change == "delete"
                    else started_writing(index)):
                time.sleep(0.05 * attempt if change == "compact" else 0)
                process.send_signal(signal.SIGKILL)
                break
            time.sleep(0.001)
        process.wait()
        state = _state(index, tmp_path)
        assert state in (old, new), f"attempt {attempt}: a reader sees neither the old index nor the new"
        assert verify_index(index).damaged == []
        killed = process.returncode == -signal.SIGKILL
        killed_mid_change += killed and (change == "delete" or state == old)
        rerun = subprocess.run(command(index), capture_output=True, text=True)
        assert rerun.returncode == 0, rerun.stderr
        assert _state(index, tmp_path)[0] == new[0] and only_named_files(index)
    assert killed_mid_change >= (2 if change == "delete" else 3)
