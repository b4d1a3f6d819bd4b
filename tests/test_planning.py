"""Index choice under a memory budget, estimates before the build, and recall-tuned search."""

import gzip
import json

import numpy as np
import pytest
from helpers import write_posts

from hicl_retrieval import BuildConfig, HiclError, Retriever, build_index
from hicl_retrieval.cli import main
from hicl_retrieval.core import native
from hicl_retrieval.corpus import estimate_records
from hicl_retrieval.index.directory import IndexDir
from hicl_retrieval.index.faiss_index import VectorIndex, effective_factory
from hicl_retrieval.index.planning import (
    check_fits,
    check_trainable,
    factory_for,
    index_ram,
    least_train_rows,
    parse_size,
    plan_index,
    train_rows,
    training_shortfall,
)
from hicl_retrieval.index.tuning import format_against, recall_at_k, tune


@pytest.mark.parametrize("text, size", [
    ("8GB", 8_000_000_000), ("512M", 512_000_000), ("1.5GiB", 1.5 * 2**30), ("100", 100), ("2 kb", 2000),
])
def test_parse_size(text, size):
    assert parse_size(text) == int(size)


def test_parse_size_rejects_nonsense():
    with pytest.raises(HiclError, match="8GB"):
        parse_size("lots")


def test_auto_is_exact_when_a_scan_is_short_and_fast_scan_codes_beyond():
    # exact while the float32 vectors are at most 16 MiB (a scan of about 2 ms)
    assert factory_for("auto", 10_922, 384) == "Flat" and factory_for("auto", 5_461, 768) == "Flat"
    assert factory_for("auto", 10_923, 384) == "IVF128,PQ192x4fs"
    assert factory_for("auto", 154_095, 384) == "IVF512,PQ192x4fs"  # 96 bytes a post: 2 dims a 4-bit code
    assert factory_for("auto", 1_000_000, 768, parse_size("8GB")) == "IVF1024,PQ384x4fs"
    # a tighter budget gets shorter codes: 4 dims a code, then 8
    assert factory_for("auto", 45_000_000, 768, parse_size("8GB")) == "IVF8192,PQ192x4fs"
    tight = factory_for("auto", 45_000_000, 768, parse_size("5GB"))
    assert tight == "IVF8192,PQ96x4fs"
    assert index_ram(tight, 45_000_000, 768) < index_ram("IVF8192,PQ192x4fs", 45_000_000, 768)
    # a small corpus whose flat index would not fit the budget is compressed too
    assert factory_for("auto", 5_000, 768, parse_size("1GB")).startswith("IVF")
    assert factory_for("ivf", 1_000_000, 384) == "IVF1024,Flat"
    assert factory_for("ivfpq", 1_000_000, 384) == "IVF1024,PQ48x8"
    assert factory_for("hnsw", 10, 384) == "HNSW32"
    assert factory_for("IVF64,SQ8", 10, 384) == "IVF64,SQ8"


def test_45m_posts_fit_8gb_and_flat_does_not():
    ours = plan_index(effective_factory(factory_for("auto", 45_000_000, 768, parse_size("8GB"))),
                      45_000_000, 768, k_factor=10)
    assert ours.build_ram <= parse_size("8GB")
    check_fits(ours, max_memory=parse_size("8GB"))
    flat = plan_index("IDMap2,Flat", 45_000_000, 768, k_factor=1)
    assert flat.index_ram > 138e9
    with pytest.raises(HiclError, match="exceeds the memory budget of 8.0 GB"):
        check_fits(flat, max_memory=parse_size("8GB"))
    with pytest.raises(HiclError, match="free on the index's disk"):
        check_fits(ours, max_memory=parse_size("8GB"), free_disk=10**9)


def test_record_estimates(tmp_path):
    plain = tmp_path / "posts.txt"
    plain.write_text("".join(f"post number {i}\n" for i in range(5000)))
    assert estimate_records(plain, "text") == 5000
    big = tmp_path / "posts.jsonl.gz"
    with gzip.open(big, "wt") as handle:
        for i in range(400_000):
            handle.write(json.dumps({"id": str(i), "text": f"post {i} about topic {i % 97} " * (1 + i % 3)}) + "\n")
    estimate = estimate_records(big, "jsonl", sample_bytes=1 << 20)
    assert 0.8 * 400_000 < estimate < 1.25 * 400_000


def test_build_refuses_what_cannot_fit_before_writing(tmp_path, capsys):
    write_posts(tmp_path / "posts.jsonl", 50)
    code = main(["build", str(tmp_path / "posts.jsonl"), "--out", str(tmp_path / "index"), "--encoder",
                 "minilm", "--index", "flat", "--max-memory", "10MB", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "exceeds the memory budget of 10.0 MB" in err and "--max-memory" in err
    assert not (tmp_path / "index").exists()


def test_recall_at_k():
    truth = np.array([[1, 2, 3], [4, 5, 6]])
    assert recall_at_k(np.array([[3, 2, 1], [4, 9, -1]]), truth, 3) == pytest.approx(4 / 6)


def clustered(count, dim, seed):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, dim))
    vectors = centres[rng.integers(0, 40, count)] + 0.6 * rng.standard_normal((count, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float16)


def check_tuning(tuning: dict, index: VectorIndex, stored, posts: int, target: float) -> None:
    """`tuning` (as a manifest records it) tried nprobe 1, 2, 4, ... up to the cheapest value whose recall@10
    reaches `target`, or all of them ending on the most thorough when none does; each recall it records is
    the one measured again here, by brute force, on the same queries (corpus posts, each without itself)."""
    ids = np.arange(posts)
    rng = np.random.default_rng(0)  # the tuner's queries: `queries` corpus posts drawn with seed 0
    sample = np.sort(rng.choice(ids, size=min(tuning["queries"], posts), replace=False))
    vectors = stored[ids].astype(np.float32)
    scores = vectors[sample] @ vectors.T
    scores[np.arange(len(sample)), sample] = -np.inf  # a query is not its own neighbour
    truth = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    measured = {}
    for nprobe in (2**i for i in range(index._ivf().nlist.bit_length())):  # nlist = 64: the last is all lists
        index.set_search_params({"nprobe": nprobe})
        _, found = index.search(vectors[sample], 11)
        found = [row[row != own][:10] for row, own in zip(found, sample)]
        measured[str(nprobe)] = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)])
    reached = [value for value, recall in measured.items() if recall >= target]
    chosen = reached[0] if reached else list(measured)[-1]  # else the most thorough: nprobe = nlist
    assert tuning["params"] == {"nprobe": int(chosen)} and tuning["target"] == target
    assert list(tuning["tried"]) == list(measured)[: list(measured).index(chosen) + 1]
    for value, recall in tuning["tried"].items():
        assert recall == pytest.approx(measured[value], abs=2e-3), value  # brute-force ties may order apart
    assert tuning["recall_at_10"] == tuning["tried"][chosen]
    index.set_search_params(tuning["params"])


@pytest.mark.parametrize("target", [0.9, 1.01])  # 1.01: no nprobe reaches it
def test_tune_reaches_the_target_with_the_cheapest_nprobe(target):
    stored = clustered(6000, 32, 0)
    ids = np.arange(len(stored))
    index = VectorIndex.create(32, "IVF64,Flat")
    index.train(stored.astype(np.float32))
    index.add(stored.astype(np.float32), ids)
    tuning = tune(index, stored, ids, k_factor=1, target=target, queries=200)
    nprobe = tuning.params["nprobe"]
    assert tuning.queries == 200 and index._ivf().nprobe == nprobe
    check_tuning(tuning.to_dict(), index, stored, len(stored), target)
    assert (tuning.recall_at_10 >= target) == (target == 0.9) and (nprobe == 64) == (target > 1)


@pytest.mark.parametrize("factory, values", [
    ("IVF64,Flat", [1, 2, 4, 8, 16, 32, 64]), ("IVF28,Flat", [1, 2, 4, 8, 16, 28]), ("IVF1,Flat", [1]),
    ("HNSW8", [16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024]), ("Flat", None),
])
def test_the_tuner_tries_up_to_the_most_thorough_setting(factory, values):
    tunable = VectorIndex.create(8, factory).tunable()
    assert (tunable[1] if tunable else None) == values


@pytest.mark.parametrize("value, target, shown", [
    (0.9998, 1.0, ("0.9998", "1")),  # not "1.000", below the target "1.00"
    (0.912, 0.95, ("0.91", "0.95")),
    (0.9512, 0.95, ("0.951", "0.95")),
    (0.94996, 0.95, ("0.94996", "0.95")),
    (0.5, 0.95, ("0.5", "0.95")),
    (1.0, 0.95, ("1", "0.95")),
    (0.95, 0.95, ("0.95", "0.95")),  # equal: alike
])
def test_format_against_prints_the_digits_that_differ(value, target, shown):
    assert format_against(value, target) == shown
    if value != target:  # rounding never turns a recall under the target into one that reaches it
        assert (float(shown[0]) < float(shown[1])) == (value < target)


@pytest.mark.parametrize("factory, posts, problem, fitting", [
    ("IVF4096,Flat", 1092, "IVF4096 needs at least 4096 posts to train its lists; these 1092 posts allow at most "
                           "IVF1092 (FAISS advises 39 posts a list: IVF28)", "IVF28,Flat"),
    ("IVF64,Flat", 60, "IVF64 needs at least 64 posts to train its lists; these 60 posts allow at most IVF60", "Flat"),
    ("IDMap2,PQ8x4fs", 10, "PQ8x4 needs at least 16 posts to train its codes (2^4 centroids a sub-vector); these 10 "
                           "posts allow at most PQ8x3", "Flat"),
    ("OPQ16,IVF4,PQ16", 200, "PQ16x8 needs at least 256 posts to train its codes (2^8 centroids a sub-vector); these "
                             "200 posts allow at most PQ16x7 (FAISS advises 39 posts a centroid: PQ16x2); its OPQ "
                             "rotation needs at least 256 posts to train; these 200 posts are fewer", "IVF4,PQ16x2"),
    ("OPQ16_64,IVF4096,PQ16", 1092, "IVF4096 needs at least 4096 posts", "OPQ16_64,IVF28,PQ16"),
    ("IVF4096,PQ8x8", 100, "IVF4096 needs at least 4096 posts to train its lists; these 100 posts allow at most IVF100 "
                           "(FAISS advises 39 posts a list: IVF2); PQ8x8 needs at least 256 posts to train its codes "
                           "(2^8 centroids a sub-vector); these 100 posts allow at most PQ8x6", "Flat"),
])
def test_training_shortfall_names_a_type_that_fits(factory, posts, problem, fitting):
    shortfall = training_shortfall(factory, posts)
    assert shortfall[0].startswith(problem) and shortfall[1] == fitting
    assert training_shortfall(fitting, posts) is None and least_train_rows(fitting) <= posts
    with pytest.raises(HiclError) as refused:
        check_trainable(factory, posts)
    assert str(refused.value) == f"{shortfall[0]}; choose --index {fitting} or --index auto"


@pytest.mark.parametrize("factory, posts", [("Flat", 1), ("HNSW32", 3), ("IVF64,SQ8", 64), ("IVF16,PQ8x8", 256),
                                            ("IDMap2,PQ8", 256), ("SQ8", 2), ("OPQ16,IVF1024,PQ16x8", 5000)])
def test_enough_posts_to_train(factory, posts):
    assert training_shortfall(factory, posts) is None and train_rows(factory, posts) >= least_train_rows(factory)
    check_trainable(factory, posts)


def test_training_samples_are_never_fewer_than_the_lists():
    assert train_rows("IVF300000,Flat", 10_000_000) == 300_000  # 262,144 would fail to train
    assert train_rows("IVF1024,PQ96x8", 45_000_000) == 65536 and train_rows("IVF64,Flat", 1000) == 1000


def test_estimated_counts_are_refused_only_when_surely_short():
    check_trainable("IVF4096,Flat", 3500, about=True)  # 25% more would do: wait for the true count
    check_trainable("IVF4096,Flat", 0, about=True)  # unknown
    with pytest.raises(HiclError, match="these ~3000 posts allow at most IVF3000 "):
        check_trainable("IVF4096,Flat", 3000, about=True)


def no_encoding(*args, **kwargs):
    raise AssertionError("must not encode")


def test_build_refuses_too_few_posts_to_train_before_encoding(tmp_path, tiny_encoder, tiny_hashencoder, monkeypatch,
                                                              capsys):
    write_posts(tmp_path / "posts.jsonl", 200)
    monkeypatch.setattr(tiny_encoder, "encode", no_encoding)
    config = BuildConfig(encoder=tiny_encoder.config, progress=False, faiss_factory="IVF4096,Flat")
    with pytest.raises(HiclError) as refused:
        build_index([tmp_path / "posts.jsonl"], tmp_path / "index", config, encoder=tiny_encoder)
    assert str(refused.value) == ("IVF4096 needs at least 4096 posts to train its lists; these ~200 posts allow at "
                                  "most IVF200 (FAISS advises 39 posts a list: IVF5); choose --index IVF5,Flat or "
                                  "--index auto")
    assert not (tmp_path / "index").exists()
    assert main(["build", str(tmp_path / "posts.jsonl"), "--out", str(tmp_path / "index"), "--encoder",
                 str(tiny_hashencoder), "--index", "IVF4096,Flat", "--quiet"]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == f"hicl-retrieval: error: {refused.value}"
    assert not (tmp_path / "index").exists()


def test_build_refused_after_encoding_resumes_with_the_advised_type(tmp_path, tiny_encoder, monkeypatch):
    write_posts(tmp_path / "posts.jsonl", 200)
    config = BuildConfig(encoder=tiny_encoder.config, progress=False, faiss_factory="IVF240,Flat")
    with pytest.raises(HiclError) as refused:  # ~200 posts may be 250: the estimate lets it encode
        build_index([tmp_path / "posts.jsonl"], tmp_path / "index", config, encoder=tiny_encoder)
    assert str(refused.value) == (
        "IVF240 needs at least 240 posts to train its lists; these 200 posts allow at most IVF200 (FAISS advises 39 "
        f"posts a list: IVF5); the encoded posts stay in {tmp_path / 'index'}: rerun the build with --index IVF5,Flat "
        "(or --index auto) to finish it without encoding again")
    assert not (tmp_path / "index" / "manifest.json").exists() and IndexDir(tmp_path / "index").read_build_state()
    monkeypatch.setattr(tiny_encoder, "encode", no_encoding)
    config = BuildConfig(encoder=tiny_encoder.config, progress=False, faiss_factory="IVF5,Flat")
    report = build_index([tmp_path / "posts.jsonl"], tmp_path / "index", config, encoder=tiny_encoder)
    assert report.resumed and report.indexed == 200
    assert IndexDir(tmp_path / "index").read_manifest().faiss_factory == "IVF5,Flat"


def test_ivf_build_is_tuned_opened_memory_mapped_and_searched(tmp_path, tiny_encoder, capsys):
    write_posts(tmp_path / "posts.jsonl", 3000)
    config = BuildConfig(encoder=tiny_encoder.config, progress=False, faiss_factory="ivf", target_recall=0.9)
    lines = []
    build_index([tmp_path / "posts.jsonl"], tmp_path / "index", config, encoder=tiny_encoder, announce=lines.append)
    assert lines and lines[0].startswith("plan: index IVF64,Flat for ~3,000 posts")
    manifest = IndexDir(tmp_path / "index").read_manifest()
    assert manifest.faiss_factory == "IVF64,Flat" and set(manifest.search_params) == {"nprobe"}
    index = IndexDir(tmp_path / "index").open_faiss(manifest)
    check_tuning(manifest.tuning, index, IndexDir(tmp_path / "index").open_vectors(manifest), 3000, 0.9)
    assert manifest.search_params == manifest.tuning["params"]
    assert index._ivf().nprobe == manifest.search_params["nprobe"]
    faiss = native.faiss()
    stacked = faiss.downcast_InvertedLists(index._ivf().invlists)  # the segment's lists under the one quantizer
    (part,), _, _ = index.keep
    assert type(stacked).__name__ == "HStackInvertedLists" and stacked.compute_ntotal() == manifest.count
    lists = faiss.downcast_InvertedLists(part._ivf().invlists)
    assert type(lists).__name__ == "OnDiskInvertedLists"  # memory-mapped, not read into RAM
    assert part._ivf().quantizer.ntotal == 0  # the part holds no copy of the quantizer
    with Retriever(tmp_path / "index", encoder=tiny_encoder) as retriever:
        assert len(retriever.search("river flooding", k=5)[0].hits) == 5
    assert main(["info", str(tmp_path / "index")]) == 0
    assert "search      nprobe=" in capsys.readouterr().out
