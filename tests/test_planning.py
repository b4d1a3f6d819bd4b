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
from hicl_retrieval.index.planning import check_fits, factory_for, index_ram, parse_size, plan_index
from hicl_retrieval.index.tuning import recall_at_k, tune


@pytest.mark.parametrize("text, size", [
    ("8GB", 8_000_000_000), ("512M", 512_000_000), ("1.5GiB", 1.5 * 2**30), ("100", 100), ("2 kb", 2000),
])
def test_parse_size(text, size):
    assert parse_size(text) == int(size)


def test_parse_size_rejects_nonsense():
    with pytest.raises(HiclError, match="8GB"):
        parse_size("lots")


def test_auto_is_exact_when_small_and_compressed_when_large():
    assert factory_for("auto", 50_000, 768) == "Flat"
    assert factory_for("auto", 1_000_000, 768, parse_size("8GB")) == "IVF1024,PQ96x8"
    assert factory_for("auto", 45_000_000, 768, parse_size("8GB")) == "IVF8192,PQ96x8"
    # a tight budget gets shorter, OPQ-rotated codes
    tight = factory_for("auto", 45_000_000, 768, parse_size("5GB"))
    assert tight == "OPQ48,IVF8192,PQ48x8"
    assert index_ram(tight, 45_000_000, 768) < index_ram("IVF8192,PQ96x8", 45_000_000, 768)
    # a small corpus whose flat index would not fit the budget is compressed too
    assert factory_for("auto", 90_000, 768, parse_size("1.5GB")).startswith("IVF")
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


def test_tune_reaches_the_target_with_the_cheapest_nprobe():
    stored = clustered(6000, 32, 0)
    ids = np.arange(len(stored))
    index = VectorIndex.create(32, "IVF64,Flat")
    index.train(stored.astype(np.float32))
    index.add(stored.astype(np.float32), ids)
    tuning = tune(index, stored, ids, k_factor=1, target=0.9, queries=200)
    nprobe = tuning.params["nprobe"]
    assert tuning.recall_at_10 >= 0.9 and tuning.queries == 200
    assert list(tuning.tried)[-1] == str(nprobe) and all(r < 0.9 for r in list(tuning.tried.values())[:-1])
    assert index._ivf().nprobe == nprobe


def test_ivf_build_is_tuned_opened_memory_mapped_and_searched(tmp_path, tiny_encoder, capsys):
    write_posts(tmp_path / "posts.jsonl", 3000)
    config = BuildConfig(encoder=tiny_encoder.config, progress=False, faiss_factory="ivf", target_recall=0.9)
    lines = []
    build_index([tmp_path / "posts.jsonl"], tmp_path / "index", config, encoder=tiny_encoder, announce=lines.append)
    assert lines and lines[0].startswith("plan: index IVF64,Flat for ~3,000 posts")
    manifest = IndexDir(tmp_path / "index").read_manifest()
    assert manifest.faiss_factory == "IVF64,Flat" and set(manifest.search_params) == {"nprobe"}
    assert manifest.tuning["recall_at_10"] >= 0.9 or manifest.search_params["nprobe"] == 64
    index = IndexDir(tmp_path / "index").open_faiss(manifest)
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
