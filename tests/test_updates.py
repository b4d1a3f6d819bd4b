"""Adding, deleting and compacting a finished index, with readers open all along."""

import json

import numpy as np
import pytest
from helpers import write_posts

from hicl_retrieval import (
    BuildConfig,
    Filter,
    HiclError,
    Retriever,
    add_posts,
    build_index,
    compact,
    delete_posts,
    reindex,
)
from hicl_retrieval.cli import main
from hicl_retrieval.index.directory import IndexDir
from hicl_retrieval.index.filters import Condition
from hicl_retrieval.index.manifest import MANIFEST, WRITE_LOCK


def contents(path):
    """post id -> (id, text, float16 vector) of every live post of the index at `path`; checks the counts agree."""
    directory = IndexDir(path)
    manifest = directory.read_manifest()
    vectors = directory.open_vectors(manifest)
    with directory.open_store(manifest) as store:
        rows = store.con.execute("SELECT id, post_id, text FROM posts ORDER BY id").fetchall()
    assert len(rows) == manifest.count
    stored = vectors[np.array([row[0] for row in rows], dtype=np.int64)]
    return {post_id: (i, text, vector.tobytes()) for (i, post_id, text), vector in zip(rows, stored)}


def only_named_files(path):
    """Whether the index folder holds exactly the files its manifest names (no leftovers of a change)."""
    manifest = IndexDir(path).read_manifest()
    present = {p.name for p in path.iterdir()} - {MANIFEST, WRITE_LOCK}
    return present == set(manifest.files)


def texts_of(retriever, query, k=10, **options):
    return [hit.text for hit in retriever.search(query, k=k, **options)[0].hits]


@pytest.fixture
def index(tmp_path, tiny_encoder):
    rows = write_posts(tmp_path / "a.jsonl", 300)
    config = BuildConfig(encoder=tiny_encoder.config, progress=False)
    build_index([tmp_path / "a.jsonl"], tmp_path / "index", config, encoder=tiny_encoder)
    return tmp_path / "index", rows


def write_more(path, rows, start, count, overlap):
    """`count` new posts from id `start`, the first `overlap` rows of `rows` again, and a broken line."""
    new = [{"id": f"n{i}", "text": f"volcano eruption ash cloud report {i} #volcano"} for i in range(start, start + count)]
    lines = [json.dumps(r) for r in new + rows[:overlap]] + ["{broken"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return new


def test_add_encodes_only_new_posts_and_matches_a_full_build(index, tmp_path, tiny_encoder, monkeypatch):
    path, rows = index
    new = write_more(tmp_path / "b.jsonl", rows, 0, 50, overlap=20)
    encoded = []
    encode = tiny_encoder.encode
    monkeypatch.setattr(tiny_encoder, "encode", lambda texts, **kw: encoded.extend(texts) or encode(texts, **kw))
    with Retriever(path, encoder=tiny_encoder) as before:
        report = add_posts(path, [tmp_path / "b.jsonl"], encoder=tiny_encoder, chunk_size=16, progress=False)
        # a reader opened before the add keeps its whole, older index
        assert not any("volcano" in t for t in texts_of(before, new[7]["text"], dedupe=False))
    assert (report.read, report.added, report.known, dict(report.rejected)) == (71, 50, 20, {"bad_json": 1})
    assert sorted(encoded) == sorted([r["text"] for r in new] + [new[7]["text"]])  # the new posts and the query
    with Retriever(path, encoder=tiny_encoder) as after:
        assert all("volcano" in t for t in texts_of(after, new[7]["text"], k=5, dedupe=False))
        assert len(after) == 350
    # a second add of the same file adds nothing
    again = add_posts(path, [tmp_path / "b.jsonl"], encoder=tiny_encoder, progress=False)
    assert (again.added, again.known) == (0, 70)

    full = tmp_path / "full.jsonl"
    full.write_text("\n".join(json.dumps(r) for r in rows + new) + "\n", encoding="utf-8")
    config = BuildConfig(encoder=tiny_encoder.config, progress=False)
    build_index([full], tmp_path / "full", config, encoder=tiny_encoder)
    assert contents(path) == contents(tmp_path / "full")
    assert len(IndexDir(path).read_manifest().segments) == 2 and only_named_files(path)


def test_interrupted_add_leaves_the_index_as_it_was(index, tmp_path, tiny_encoder, monkeypatch):
    path, rows = index
    write_more(tmp_path / "b.jsonl", rows, 0, 60, overlap=0)
    before = contents(path)
    calls = []
    encode = tiny_encoder.encode

    def failing(texts, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("stopped mid-add")
        return encode(texts, **kw)

    monkeypatch.setattr(tiny_encoder, "encode", failing)
    with pytest.raises(RuntimeError, match="mid-add"):
        add_posts(path, [tmp_path / "b.jsonl"], encoder=tiny_encoder, chunk_size=16, progress=False)
    monkeypatch.undo()
    assert contents(path) == before  # the appended vectors lie past what the manifest covers
    report = add_posts(path, [tmp_path / "b.jsonl"], encoder=tiny_encoder, chunk_size=16, progress=False)
    assert report.added == 60 and len(contents(path)) == 360
    assert only_named_files(path)


def test_delete_hides_posts_at_once_and_compact_removes_them(index, tiny_encoder):
    path, rows = index
    with Retriever(path, encoder=tiny_encoder) as retriever:
        wanted = texts_of(retriever, "river flooding", k=20, dedupe=False)
    doomed = [r for r in rows if r["text"] in wanted[:3]]
    rare = [r for r in rows if "#rare" in r["text"]]
    deleted = delete_posts(path, post_ids=[r["id"] for r in doomed],
                           filter=Filter.of(Condition("hashtag", "has", "#rare")))
    assert deleted == len({r["id"] for r in doomed + rare})
    gone = {r["text"] for r in doomed + rare}
    with Retriever(path, encoder=tiny_encoder) as retriever:
        hidden = texts_of(retriever, "river flooding", k=20, dedupe=False)
        assert not gone & set(hidden) and len(hidden) == 20
        kept = [t for t in wanted if t not in gone]
        assert set(kept[: len(kept) - 3]) <= set(hidden)  # the rest of the old hits (ties may reorder the tail)
        manifest = IndexDir(path).read_manifest()
        assert manifest.count == 300 - deleted and manifest.deleted == deleted
        assert sum(segment.rows for segment in manifest.segments) == 300
        compacted = compact(path)
        # the reader opened before the compaction still answers from its own files
        assert texts_of(retriever, "river flooding", k=20, dedupe=False) == hidden
    (segment,) = compacted.segments
    assert segment.rows == segment.posts == compacted.count == 300 - deleted and not compacted.deletions
    with Retriever(path, encoder=tiny_encoder) as retriever:
        assert len(retriever) == compacted.count
        assert texts_of(retriever, "river flooding", k=20, dedupe=False) == hidden
    assert {text for _, text, _ in contents(path).values()} == {r["text"] for r in rows} - gone
    assert only_named_files(path)
    with pytest.raises(HiclError, match="post ids or a filter"):
        delete_posts(path)


def test_one_change_at_a_time(index):
    import fcntl

    path, _ = index
    with open(path / WRITE_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with pytest.raises(HiclError, match="another add, delete, compact or reindex"):
            delete_posts(path, post_ids=["1"])
        with pytest.raises(HiclError, match="another add, delete, compact or reindex"):
            reindex(path, "Flat")


def test_cli_add_delete_compact(index, tmp_path, capsys):
    path, rows = index
    write_more(tmp_path / "b.jsonl", rows, 0, 5, overlap=2)
    assert main(["add", str(path), str(tmp_path / "b.jsonl"), "--quiet"]) == 0
    assert "added 5, skipped (post id already indexed) 2" in capsys.readouterr().out
    assert main(["delete", str(path), "--post-id", "n0", "--author", "user3"]) == 0
    out = capsys.readouterr().out
    assert f"{1 + sum(r['author'] == 'user3' for r in rows)} posts deleted" in out
    assert main(["compact", str(path)]) == 0
    assert f"compacted to {305 - 1 - sum(r['author'] == 'user3' for r in rows)} posts" in capsys.readouterr().out
    assert main(["delete", str(path)]) == 1
    assert "post ids or a filter" in capsys.readouterr().err


def test_25_delete_finds_post_ids_however_the_dump_quoted_them(tmp_path, tiny_encoder, capsys):
    corpus = tmp_path / "quoted.csv"
    corpus.write_text("id,text\n'3141592653589793',pi day post\n\" 2718281828 \",e post\n7,seven post\n",
                      encoding="utf-8")
    build_index([corpus], tmp_path / "idx", BuildConfig(encoder=tiny_encoder.config, progress=False),
                encoder=tiny_encoder)
    assert main(["delete", str(tmp_path / "idx"), "--post-id", "3141592653589793", "--post-id", "'2718281828'"]) == 0
    assert "2 posts deleted" in capsys.readouterr().out
    with Retriever(tmp_path / "idx", encoder=tiny_encoder) as retriever:
        assert [h.post_id for h in retriever.search("post", k=5)[0].hits] == ["7"]
