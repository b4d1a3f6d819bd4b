"""Another FAISS type from the stored vectors, and exact re-ranking of compressed candidates."""

import json

import numpy as np
import pytest
from helpers import write_posts

from hicl_retrieval import BuildConfig, HiclError, Retriever, build_index, reindex
from hicl_retrieval.cli import main
from hicl_retrieval.index.directory import IndexDir


@pytest.fixture
def flat_index(tmp_path, tiny_encoder):
    write_posts(tmp_path / "posts.jsonl", 1500)
    config = BuildConfig(encoder=tiny_encoder.config, progress=False)
    build_index([tmp_path / "posts.jsonl"], tmp_path / "index", config, encoder=tiny_encoder)
    return tmp_path / "index"


QUERIES = ["river flooding", "new phone launch", "debate fact check", "smoke on the ridge", "penalties"]


def ids_and_scores(path, encoder, **options):
    with Retriever(path, encoder=encoder, **options) as retriever:
        results = retriever.search(QUERIES, k=10, dedupe=False)
    return [[h.id for h in r.hits] for r in results], [[h.score for h in r.hits] for r in results]


def test_reindex_switches_type_without_encoding(flat_index, tiny_encoder, monkeypatch):
    exact_ids, exact_scores = ids_and_scores(flat_index, tiny_encoder)
    old_files = {s.faiss_file for s in IndexDir(flat_index).read_manifest().segments}

    def no_encoding(*args, **kwargs):
        raise AssertionError("reindex must not encode")

    monkeypatch.setattr(tiny_encoder, "encode", no_encoding)
    manifest = reindex(flat_index, "PQ8x4")
    monkeypatch.undo()
    assert (manifest.faiss_factory, manifest.k_factor, manifest.count) == ("IDMap2,PQ8x4", 10, 1500)
    new_files = {s.faiss_file for s in manifest.segments}
    assert not any((flat_index / name).exists() for name in old_files)
    assert all((flat_index / name).exists() for name in new_files) and not old_files & new_files

    reranked_ids, reranked_scores = ids_and_scores(flat_index, tiny_encoder)
    codes_ids, codes_scores = ids_and_scores(flat_index, tiny_encoder, k_factor=1)
    def recall(found_scores):  # share of hits scoring at least the exact 10th best (ties count)
        return np.mean([np.mean(np.asarray(f) >= e[-1] - 1e-4) for f, e in zip(found_scores, exact_scores)])

    exact_codes = [[float(s) for s in row] for row in _exact_scores(flat_index, tiny_encoder, codes_ids)]
    print("recall@10 with re-ranking", recall(reranked_scores), "without", recall(exact_codes))
    assert recall(reranked_scores) >= 0.95
    assert recall(reranked_scores) > recall(exact_codes)
    # re-ranked scores are the exact cosines of the stored vectors, as with the flat index
    for ids, scores, want_ids, want_scores in zip(reranked_ids, reranked_scores, exact_ids, exact_scores):
        exact_of = dict(zip(want_ids, want_scores))
        shared = [(score, exact_of[i]) for i, score in zip(ids, scores) if i in exact_of]
        assert len(shared) >= 5
        np.testing.assert_allclose(*zip(*shared), atol=1e-4)

    back = reindex(flat_index, "Flat")
    assert (back.faiss_factory, back.k_factor) == ("IDMap2,Flat", 1)
    assert ids_and_scores(flat_index, tiny_encoder)[0] == exact_ids


def _exact_scores(path, encoder, ids):
    directory = IndexDir(path)
    stored = directory.open_vectors(directory.read_manifest())
    queries = encoder.encode(QUERIES)
    return [stored[np.asarray(row)].astype(np.float32) @ query for row, query in zip(ids, queries)]


def test_reindex_errors_and_cli(flat_index, capsys):
    with pytest.raises(HiclError, match="FAISS cannot build"):
        reindex(flat_index, "NoSuchIndex")
    assert IndexDir(flat_index).read_manifest().faiss_factory == "IDMap2,Flat"
    assert main(["reindex", str(flat_index), "--index", "HNSW8", "--k-factor", "2"]) == 0
    assert "now in IDMap2,HNSW8" in capsys.readouterr().out
    assert main(["info", str(flat_index), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["faiss_factory"], info["k_factor"]) == ("IDMap2,HNSW8", 2)
    assert main(["query", str(flat_index), "phone", "--k-factor", "0"]) == 1
    assert "--k-factor must be at least 1" in capsys.readouterr().err
