"""Another FAISS type from the stored vectors, and exact re-ranking of compressed candidates."""

import json
import logging
import shutil

import numpy as np
import pytest
from helpers import write_posts

from hicl_retrieval import BuildConfig, HiclError, Retriever, build_index, compact, delete_posts, reindex
from hicl_retrieval.cli import main
from hicl_retrieval.index.directory import IndexDir
from hicl_retrieval.index.faiss_index import default_k_factor, effective_factory
from hicl_retrieval.index.planning import factory_for
from hicl_retrieval.index.tuning import format_against

POSTS = 1500
SPECS = ["flat", "auto", "hnsw", "ivf", "ivfpq", "HNSW8", "IVF16,Flat", "PQ8x4"]
"""Every way to name an index type: the names `--index` knows and FAISS factory strings."""


@pytest.fixture(scope="module")
def sources(tmp_path_factory, tiny_encoder):
    """An index of `POSTS` posts as each type of `SPECS` (built once, reindexed from the flat one), and one of
    200 posts: folders that a test copies before changing."""
    folder = tmp_path_factory.mktemp("sources")
    write_posts(folder / "posts.jsonl", POSTS)
    config = BuildConfig(encoder=tiny_encoder.config, progress=False)
    build_index([folder / "posts.jsonl"], folder / "flat", config, encoder=tiny_encoder)
    for spec in SPECS[1:]:
        shutil.copytree(folder / "flat", folder / spec)
        reindex(folder / spec, spec)
    write_posts(folder / "small.jsonl", 200)
    build_index([folder / "small.jsonl"], folder / "small", config, encoder=tiny_encoder)
    return folder


def copy_of(sources, name, tmp_path):
    return shutil.copytree(sources / name, tmp_path / "index")


@pytest.fixture
def flat_index(sources, tmp_path):
    return copy_of(sources, "flat", tmp_path)


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


def knob(factory):
    """The search parameter an index of `factory` is tuned by, and the values the tuner may try."""
    if "IVF" in factory:
        lists = int(factory.split("IVF")[1].split(",")[0])
        return "nprobe", sorted({*(2**i for i in range(lists.bit_length())), lists})
    if "HNSW" in factory:
        return "efSearch", [16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024]
    return None, []


def check_describes(path, factory, count, encoder):
    """The index at `path` is one of `factory` holding `count` posts, whose search parameters and tuning are
    its type's own (none left from another type), set on opening; it answers queries."""
    manifest = IndexDir(path).read_manifest()
    assert (manifest.faiss_factory, manifest.k_factor, manifest.count) == (factory, default_k_factor(factory), count)
    name, values = knob(factory)
    if name is None:
        assert manifest.search_params == {} and manifest.tuning == {}
    else:
        assert set(manifest.search_params) == {name} and manifest.tuning["params"] == manifest.search_params
        assert {int(value) for value in manifest.tuning["tried"]} <= set(values)
        assert manifest.search_params[name] in values and manifest.tuning["queries"] == 500
        index = IndexDir(path).open_faiss(manifest)
        assert getattr(index._ivf() if name == "nprobe" else index._inner().hnsw, name) == manifest.search_params[name]
    with Retriever(path, encoder=encoder) as retriever:
        assert [len(result.hits) for result in retriever.search(QUERIES, k=10, dedupe=False)] == [10] * len(QUERIES)


@pytest.mark.parametrize("target", SPECS)
@pytest.mark.parametrize("source", SPECS)
def test_reindex_converts_every_type_to_every_other(sources, tmp_path, tiny_encoder, source, target):
    path = copy_of(sources, source, tmp_path)
    manifest = reindex(path, target)
    assert manifest.faiss_factory == effective_factory(factory_for(target, POSTS, 32))
    check_describes(path, manifest.faiss_factory, POSTS, tiny_encoder)


@pytest.mark.parametrize("source", SPECS)
def test_compact_keeps_the_type_and_tunes_it_again(sources, tmp_path, tiny_encoder, source):
    path = copy_of(sources, source, tmp_path)
    factory = IndexDir(path).read_manifest().faiss_factory
    delete_posts(path, post_ids=[str(i) for i in range(0, POSTS, 10)])
    manifest = compact(path)
    assert len(manifest.segments) == 1 and not manifest.deletions
    check_describes(path, factory, POSTS - POSTS // 10, tiny_encoder)


@pytest.mark.parametrize("source, spec, message", [
    ("flat", "IVF4096,Flat", "IVF4096 needs at least 4096 posts to train its lists; these 1500 posts allow at most "
                             "IVF1500 (FAISS advises 39 posts a list: IVF38); "
                             "choose --index IVF38,Flat or --index auto"),
    ("small", "PQ8x8", "PQ8x8 needs at least 256 posts to train its codes (2^8 centroids a sub-vector); these 200 "
                       "posts allow at most PQ8x7 (FAISS advises 39 posts a centroid: PQ8x2); "
                       "choose --index PQ8x2 or --index auto"),
    ("small", "IVF16,PQ8x8", "PQ8x8 needs at least 256 posts to train its codes (2^8 centroids a sub-vector); these "
                             "200 posts allow at most PQ8x7 (FAISS advises 39 posts a centroid: PQ8x2); "
                             "choose --index IVF16,PQ8x2 or --index auto"),
    ("small", "OPQ4,IVF4,PQ4x4", "its OPQ rotation needs at least 256 posts to train; these 200 posts are fewer; "
                                 "choose --index IVF4,PQ4x4 or --index auto"),
    ("small", "IVF256,PQ8x8", "IVF256 needs at least 256 posts to train its lists; these 200 posts allow at most "
                              "IVF200 (FAISS advises 39 posts a list: IVF5); PQ8x8 needs at least 256 posts to train "
                              "its codes (2^8 centroids a sub-vector); these 200 posts allow at most PQ8x7 (FAISS "
                              "advises 39 posts a centroid: PQ8x2); choose --index IVF5,PQ8x2 or --index auto"),
    ("small", "RQ2x8", "FAISS cannot train IDMap2,RQ2x8 on 200 posts (Error in void faiss::Clustering"),
])
def test_reindex_refuses_too_few_posts_to_train_and_its_advice_works(sources, tmp_path, capsys, source, spec,
                                                                      message):
    path = copy_of(sources, source, tmp_path)
    files = sorted(path.iterdir())
    before = IndexDir(path).read_manifest()
    assert main(["reindex", str(path), "--index", spec]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"hicl-retrieval: error: {message}") and err.count("\n") == 1  # one line, no traceback
    assert IndexDir(path).read_manifest() == before  # and nothing written but the lock file
    assert sorted(f for f in path.iterdir() if f.name != "write.lock") == files
    advised = err.split("choose --index ")[1].split(" or ")[0]
    assert reindex(path, advised).faiss_factory == effective_factory(advised)


def test_compact_refuses_a_type_its_posts_no_longer_train_and_says_to_reindex(sources, tmp_path):
    path = copy_of(sources, "IVF16,Flat", tmp_path)
    delete_posts(path, post_ids=[str(i) for i in range(10, POSTS)])
    with pytest.raises(HiclError) as refused:
        compact(path)
    assert str(refused.value) == (
        "IVF16 needs at least 16 posts to train its lists; these 10 posts allow at most IVF10; "
        f"compact keeps the index type, so reindex it first: hicl-retrieval reindex {path} --index Flat")
    assert main(["reindex", str(path), "--index", "Flat"]) == 0 and main(["compact", str(path)]) == 0
    assert IndexDir(path).read_manifest().count == 10


@pytest.mark.parametrize("spec", ["IVF16,PQ4x4", "HNSW8"])
def test_recall_short_of_the_target_prints_the_digits_that_differ(sources, tmp_path, caplog, capsys, spec):
    path = copy_of(sources, "flat", tmp_path)
    with caplog.at_level(logging.WARNING, logger="hicl_retrieval.index.tuning"):
        manifest = reindex(path, spec, k_factor=1, target_recall=1.0)
    reached = manifest.tuning["recall_at_10"]
    shown, target = format_against(reached, 1.0)
    assert reached < 1.0 and target == "1" and float(shown) < 1.0  # rounding to 3 decimals may print 1.000
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        f"{manifest.faiss_factory} reaches recall@10 {shown} only, below the target 1"]
    assert main(["info", str(path)]) == 0
    name, value = next(iter(manifest.search_params.items()))
    assert (f"search      {name}={value}: recall@10 {shown} against exact search (target 1, 500 corpus posts"
            in capsys.readouterr().out)


def test_fast_scan_codes_without_inverted_lists_are_refused_in_one_line_by_reindex_and_build(sources, tmp_path,
                                                                                             capsys):
    spec = "PQ16x4fs"
    path = copy_of(sources, "flat", tmp_path)
    files, before = sorted(path.iterdir()), IndexDir(path).read_manifest()
    message = (f"hicl-retrieval: error: the index '{spec}' keeps fast-scan codes (x4fs) without inverted lists, "
               "which this version does not search; give them inverted lists (IVF<n>,PQ<m>x4fs) or drop fs\n")
    assert main(["reindex", str(path), "--index", spec]) == 1
    assert capsys.readouterr().err == message
    assert IndexDir(path).read_manifest() == before
    assert sorted(f for f in path.iterdir() if f.name != "write.lock") == files
    out = tmp_path / "built"
    assert main(["build", str(sources / "small.jsonl"), "--out", str(out), "--encoder", before.encoder.model,
                 "--pooling", before.encoder.pooling, "--index", spec, "--quiet"]) == 1
    err = capsys.readouterr().err  # after the model's loading bar
    assert err.endswith(message) and err.count("error") == 1 and "Traceback" not in err and not out.exists()
