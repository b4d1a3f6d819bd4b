"""Build and query with the tiny #Encoder-shaped model: index directory, manifest, retriever."""

import json

import numpy as np
import pytest
from helpers import write_corpus

from hicl_retrieval import BuildConfig, HiclError, Retriever, build_index
from hicl_retrieval.core.text import duplicate_key, is_near_duplicate
from hicl_retrieval.index.directory import IndexDir
from hicl_retrieval.index.manifest import MANIFEST, Manifest
from hicl_retrieval.index.store import PostStore


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_encoder):
    root = tmp_path_factory.mktemp("idx")
    corpus = root / "posts.jsonl"
    write_corpus(corpus)
    config = BuildConfig(encoder=tiny_encoder.config, progress=False, chunk_size=16)
    report = build_index([corpus], root / "index", config, encoder=tiny_encoder)
    return root / "index", report, corpus


def test_build_counts_add_up_and_rejects_are_written(built):
    path, report, corpus = built
    assert report.read == 65
    assert report.indexed == 62
    assert dict(report.rejected) == {"bad_json": 1, "empty_text": 1}
    assert report.duplicates == 1
    assert report.read == report.indexed + sum(report.rejected.values()) + report.duplicates
    rejects = [json.loads(line) for line in (path / "rejects.jsonl").read_text().splitlines()]
    assert sorted((r["line"], r["reason"]) for r in rejects) == [
        (63, "duplicate_post_id"), (64, "bad_json"), (65, "empty_text")
    ]
    assert all(r["source"] == str(corpus) for r in rejects)
    assert report.repeated_texts == 2  # the retweet and the copy with another link


def test_manifest_round_trip_and_files(built, tiny_encoder):
    path, report, _ = built
    manifest = IndexDir(path).read_manifest()
    assert Manifest.from_dict(json.loads(json.dumps(manifest.to_dict()))) == manifest
    assert manifest.count == 62 and manifest.next_id == 63
    (segment,) = manifest.segments
    assert (segment.name, segment.rows, segment.posts, segment.first_id, segment.last_id) == ("seg-0", 63, 62, 0, 62)
    assert manifest.encoder == tiny_encoder.config
    assert manifest.dim == tiny_encoder.dim
    assert manifest.faiss_factory == "IDMap2,Flat"
    assert manifest.stats["indexed"] == 62
    assert set(manifest.files) == {"seg-0.f16", "seg-0.ids.npy", "seg-0.duckdb", "seg-0.faiss", "seg-0.rows",
                                   "seg-0.rows.offsets.npy", "seg-0.postids.npy", "seg-0.postids.buckets.npy",
                                   "trained-0.faiss",
                                   "rejects.jsonl"}


def test_vector_ids_are_the_store_keys(built, tiny_encoder):
    path, _, _ = built
    directory = IndexDir(path)
    manifest = directory.read_manifest()
    vectors = directory.open_vectors(manifest)
    store = directory.open_store(manifest)
    try:
        rows = store.fetch([0, 17, 41])
        assert store.fetch([62]) == {}  # the duplicate post id was removed from the store...
    finally:
        store.close()
    assert directory.open_faiss(manifest).size == 62  # ...and never reached FAISS
    fresh = tiny_encoder.encode([rows[i].text for i in (0, 17, 41)])
    np.testing.assert_allclose(vectors[[0, 17, 41]].astype(np.float32), fresh, atol=2e-3)


def test_query_drops_itself_and_copies_and_still_returns_k(built, tiny_encoder):
    path, _, _ = built
    query = "river flooding downtown streets evacuated update number 0 #topic0"
    with Retriever(path, encoder=tiny_encoder) as retriever:
        (result,) = retriever.search(query, k=10)
        assert len(result.hits) == 10
        keys = [duplicate_key(h.text) for h in result.hits]
        assert not any(is_near_duplicate(duplicate_key(query), key) for key in keys)
        assert all(not is_near_duplicate(a, b) for i, a in enumerate(keys) for b in keys[i + 1 :])
        assert [h.score for h in result.hits] == sorted((h.score for h in result.hits), reverse=True)
        (raw,) = retriever.search(query, k=3, dedupe=False)
        assert raw.hits[0].score == pytest.approx(1.0, abs=2e-3)
        assert is_near_duplicate(duplicate_key(raw.hits[0].text), duplicate_key(query))
        everything = retriever.search(query, k=500)[0].hits
        assert len(everything) == 62 - 3  # every post but the query's three copies
        with pytest.raises(HiclError, match="k must be"):
            retriever.search(query, k=0)


def test_hits_carry_metadata_and_batches_match_single_queries(built, tiny_encoder):
    path, _, corpus = built
    with Retriever(path, encoder=tiny_encoder) as retriever:
        queries = ["wildfire smoke", "phone launch", "penalties in the final"]
        batched = retriever.search(queries, k=5)
        for query, result in zip(queries, batched):
            single = retriever.search(query, k=5)[0]
            assert [h.id for h in single.hits] == [h.id for h in result.hits]
        hit = batched[0].hits[0]
    assert hit.source == str(corpus) and hit.line >= 1
    original = json.loads(corpus.read_text().splitlines()[hit.line - 1])
    assert (hit.post_id, hit.text, hit.author) == (original["id"], original["text"], original["author"])
    assert hit.hashtags == [f"#topic{int(original['id']) % 5}"]
    assert hit.created_at is not None and hit.to_dict()["created_at"].startswith("2024-05-")


def test_retriever_recreates_the_encoder_from_the_manifest(built, tiny_encoder):
    path, _, _ = built
    with Retriever(path) as retriever:
        assert retriever.encoder.config == tiny_encoder.config
        own = retriever.search("football final", k=4)
    with Retriever(path, encoder=tiny_encoder) as retriever:
        assert [h.id for h in retriever.search("football final", k=4)[0].hits] == [h.id for h in own[0].hits]


def test_strip_hashtags_changes_the_query_vector(built, tiny_encoder):
    path, _, _ = built
    with Retriever(path, encoder=tiny_encoder) as retriever:
        plain = retriever.search("#topic3 phone", k=62, dedupe=False)[0].hits
        stripped = retriever.search("#topic3 phone", k=62, dedupe=False, strip_query_hashtags=True)[0].hits
        reference = retriever.search("phone", k=62, dedupe=False)[0].hits
    assert [h.id for h in stripped] == [h.id for h in reference]
    assert [h.score for h in plain] != [h.score for h in stripped]


def test_incomplete_or_damaged_index_fails_clearly(built, tmp_path):
    path, _, _ = built
    with pytest.raises(HiclError, match="does not exist"):
        IndexDir(tmp_path / "nowhere").read_manifest()
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "seg-0.duckdb").write_bytes(b"")
    with pytest.raises(HiclError, match="holds index files but no manifest.json"):
        Retriever(partial)
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("manifest.json", "seg-0.duckdb", "rejects.jsonl", "seg-0.f16", "seg-0.ids.npy", "trained-0.faiss"):
        (copy / name).write_bytes((path / name).read_bytes())
    (copy / "seg-0.faiss").write_bytes((path / "seg-0.faiss").read_bytes()[:100])
    with pytest.raises(HiclError, match="seg-0.faiss has 100 bytes"):
        IndexDir(copy).read_manifest()
    data = json.loads((path / MANIFEST).read_text())
    (copy / MANIFEST).write_text(json.dumps({**data, "format_version": 99}))
    with pytest.raises(HiclError, match="format 99"):
        IndexDir(copy).read_manifest()


def test_existing_index_is_kept_without_overwrite(built, tiny_encoder, tmp_path):
    path, _, corpus = built
    config = BuildConfig(encoder=tiny_encoder.config, progress=False)
    with pytest.raises(HiclError, match="--overwrite"):
        build_index([corpus], path, config, encoder=tiny_encoder)
    assert IndexDir(path).read_manifest().count == 62
    stranger = tmp_path / "mine"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("keep me")
    with pytest.raises(HiclError, match="not part of an index"):
        build_index([corpus], stranger, BuildConfig(encoder=tiny_encoder.config, overwrite=True), encoder=tiny_encoder)
    assert (stranger / "notes.txt").read_text() == "keep me"


def test_other_faiss_factories_and_bad_ones(tiny_encoder, tmp_path):
    corpus = tmp_path / "posts.jsonl"
    write_corpus(corpus)
    config = BuildConfig(encoder=tiny_encoder.config, progress=False, faiss_factory="HNSW16")
    build_index([corpus], tmp_path / "hnsw", config, encoder=tiny_encoder)
    with Retriever(tmp_path / "hnsw", encoder=tiny_encoder) as retriever:
        assert retriever.manifest.faiss_factory == "IDMap2,HNSW16"
        assert len(retriever.search("wildfire", k=5)[0].hits) == 5
    bad = BuildConfig(encoder=tiny_encoder.config, progress=False, faiss_factory="NoSuchIndex")
    with pytest.raises(HiclError, match="FAISS cannot build"):
        build_index([corpus], tmp_path / "bad", bad, encoder=tiny_encoder)
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("rule", ["twitter", "hicl"])
def test_hits_carry_the_hashtags_the_store_holds(tmp_path, tiny_encoder, rule):
    """Searches extract a hit's hashtags from its text instead of reading them: the same lists."""
    texts = ["plain #Flood and #flood again", "＃全角 tag, #café_2024 #x̱y", "no tags at all", "a&#39;b #1st #_",
             "#end.", "mid#word #a-b #Über", "RT @u: #RT_tag https://t.co/x#frag", "#️⃣ #e\u0301cole"]
    (tmp_path / "posts.jsonl").write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n"
                                                  for i, t in enumerate(texts)), encoding="utf-8")
    build_index([tmp_path / "posts.jsonl"], tmp_path / "index",
                BuildConfig(encoder=tiny_encoder.config, progress=False, hashtag_rule=rule), encoder=tiny_encoder)
    ids = list(range(len(texts)))
    [segment] = IndexDir(tmp_path / "index").read_manifest().segments
    with PostStore(tmp_path / "index" / segment.store_file, read_only=True) as segment:
        stored = segment.fetch(ids)  # the lists the writer stored
    assert any(row.hashtags for row in stored.values())
    with Retriever(tmp_path / "index", encoder=tiny_encoder) as retriever:
        assert retriever.store.hashtag_rule == rule and retriever.store.fetch(ids) == stored
        hits = retriever.search(texts[0], k=len(texts), dedupe=False)[0].hits
        assert {hit.post_id: hit.hashtags for hit in hits} == {row.post_id: row.hashtags for row in stored.values()}
