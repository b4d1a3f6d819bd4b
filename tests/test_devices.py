"""Devices, precisions and token-budget batches: resolution, the manifest's record, the refusal of a mismatch."""

import dataclasses
import json
import random
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import write_corpus
from hypothesis import given, settings
from hypothesis import strategies as st

from hicl_retrieval import BuildConfig, HiclError, Retriever, add_posts, build_index
from hicl_retrieval.cli import main
from hicl_retrieval.core.config import DeviceConfig, RayConfig
from hicl_retrieval.core.prefetch import ahead
from hicl_retrieval.encoding.batches import token_batches
from hicl_retrieval.encoding.devices import resolve_device, resolve_dtype
from hicl_retrieval.encoding.encoder import Encoder
from hicl_retrieval.encoding.pools import LocalEncoding, open_encoding
from hicl_retrieval.index.manifest import MANIFEST

TEXTS = [f"river flood {'word ' * (i % 17)}update {i} #topic{i % 3}" for i in range(90)]


def test_auto_is_the_cpu_without_a_gpu_and_named_devices_are_checked(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == resolve_device("CPU") == "cpu"
    with pytest.raises(HiclError, match="--device cuda: no CUDA GPU is visible"):
        resolve_device("cuda")
    with pytest.raises(HiclError, match="write cuda:N"):
        resolve_device("cuda:x")
    with pytest.raises(HiclError, match="unknown --device 'tpu'; choose one of auto, cpu, cuda, cuda:N, mps"):
        resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == resolve_device("cuda") == "cuda:0"
    assert resolve_device("cuda:1") == "cuda:1"
    with pytest.raises(HiclError, match="this machine has 2 CUDA GPU"):
        resolve_device("cuda:2")


def test_auto_precision_is_bfloat16_where_the_gpu_has_it_else_half_and_float32_on_a_cpu(monkeypatch):
    assert resolve_dtype("auto", "cpu") == "float32"
    assert resolve_dtype("auto", "mps") == "float16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_dtype("auto", "cuda:0") == "bfloat16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert resolve_dtype("auto", "cuda:0") == "float16"
    assert resolve_dtype("bf16", "cpu") == "bfloat16" and resolve_dtype("FP16", "cpu") == "float16"
    with pytest.raises(HiclError, match="unknown --dtype 'int4'; choose one of auto, float32, float16, bfloat16"):
        resolve_dtype("int4", "cpu")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=128), max_size=300),
       st.integers(min_value=128, max_value=5000), st.one_of(st.none(), st.integers(min_value=1, max_value=100)))
def test_token_batches_cover_every_post_once_and_stay_within_budget(lengths, budget, max_posts):
    batches = token_batches(lengths, budget, max_posts)
    order = [i for batch in batches for i in batch]
    assert sorted(order) == list(range(len(lengths)))
    assert [lengths[i] for i in order] == sorted(lengths, reverse=True)
    for batch in batches:
        assert batch and len(batch) * max(lengths[i] for i in batch) <= budget
        assert max_posts is None or len(batch) <= max_posts


def test_token_batches_refuse_a_post_over_the_budget():
    with pytest.raises(HiclError, match="a post of 50 tokens does not fit --max-tokens-per-batch 40"):
        token_batches([3, 50, 4], 40)


def test_vectors_come_back_in_input_order_whatever_the_batches(tiny_encoder):
    one_by_one = np.vstack([tiny_encoder.encode([text]) for text in TEXTS[:12]])
    for max_tokens, batch_size in ((128, None), (400, 3), (100_000, None)):
        batched = tiny_encoder.encode(TEXTS[:12], max_tokens=max_tokens, batch_size=batch_size)
        np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    with pytest.raises(HiclError, match="--max-tokens-per-batch must be at least the encoder's max_length 128"):
        tiny_encoder.encode(TEXTS, max_tokens=64)


def test_half_precision_runs_the_model_in_it_and_records_it(tiny_encoder):
    half = Encoder(tiny_encoder.config, device="cpu", dtype="bfloat16")
    assert half.config.dtype == "bfloat16" and next(half.model.parameters()).dtype == torch.bfloat16
    vectors = half.encode(TEXTS)
    full = tiny_encoder.encode(TEXTS)
    assert vectors.dtype == np.float32
    cosines = np.sum(vectors * full, axis=1)  # the same vectors, to bfloat16's precision
    assert cosines.mean() > 0.98 and cosines.min() > 0.9
    with pytest.raises(HiclError, match="int8 quantisation starts from float32 weights"):
        Encoder(dataclasses.replace(tiny_encoder.config, quantize="int8"), device="cpu", dtype="bfloat16")


def test_prefetched_encoding_gives_the_same_chunks_in_order(tiny_encoder):
    chunks = [TEXTS[i : i + 7] for i in range(0, len(TEXTS), 7)]
    plain = list(LocalEncoding(tiny_encoder, DeviceConfig(), prefetch=False).encoded(iter(chunks), list))
    ahead_of_time = list(LocalEncoding(tiny_encoder, DeviceConfig(), prefetch=True).encoded(iter(chunks), list))
    assert [chunk for chunk, _ in ahead_of_time] == chunks
    for (_, want), (_, got) in zip(plain, ahead_of_time):
        np.testing.assert_array_equal(got, want)
    stopped = LocalEncoding(tiny_encoder, DeviceConfig(), prefetch=True).encoded(iter(chunks * 50), list)
    next(stopped)
    stopped.close()  # as when writing a chunk fails
    assert not [thread for thread in threading.enumerate() if thread.name == "prefetch"]


def test_ahead_raises_the_producers_error_where_it_happened_and_stops_when_closed():
    def numbers():
        yield from range(3)
        raise ValueError("line 4 is bad")

    seen = []
    with pytest.raises(ValueError, match="line 4 is bad"):
        for number in ahead(numbers()):
            seen.append(number)
    assert seen == [0, 1, 2]
    endless = ahead(iter(range(10**9)), depth=2)
    assert next(endless) == 0
    endless.close()
    assert not [thread for thread in threading.enumerate() if thread.name == "prefetch"]


@pytest.fixture(scope="module")
def bf16_index(tmp_path_factory, tiny_encoder):
    root = tmp_path_factory.mktemp("bf16")
    write_corpus(root / "posts.jsonl")
    config = BuildConfig(encoder=tiny_encoder.config, progress=False, encoding=DeviceConfig(dtype="bfloat16"))
    report = build_index([root / "posts.jsonl"], root / "index", config)
    return root, report


def test_the_manifest_records_the_precision_and_queries_use_it(bf16_index):
    root, report = bf16_index
    manifest = json.loads((root / "index" / MANIFEST).read_text())
    assert manifest["encoder"]["dtype"] == "bfloat16"
    assert manifest["stats"]["encoded_on"].startswith("cpu (")
    with Retriever(root / "index") as retriever:
        assert retriever.encoder.config.dtype == "bfloat16"
        hits = retriever.search("river flood update", k=3)[0].hits
        assert len(hits) == 3 and hits[0].score > 0.9
    with Retriever(root / "index", running=DeviceConfig(dtype="bf16")) as retriever:
        assert retriever.encoder.config.dtype == "bfloat16"


def test_a_query_or_an_add_in_another_precision_is_refused_in_one_line(bf16_index, capsys):
    root, _ = bf16_index
    index = root / "index"
    with pytest.raises(HiclError, match=r"was encoded in bfloat16; encoding in float32 would not match its vectors"):
        Retriever(index, running=DeviceConfig(dtype="float32"))
    with pytest.raises(HiclError, match="pass --dtype bfloat16"):
        add_posts(index, [root / "posts.jsonl"], running=DeviceConfig(dtype="float16"), progress=False)
    assert main(["query", str(index), "river flood", "--dtype", "float32"]) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "encoded in bfloat16" in error


@pytest.mark.parametrize("args, message", [
    (["--device", "cuda"], "--device cuda: no CUDA GPU is visible"),
    (["--device", "gpu0"], "unknown --device 'gpu0'"),
    (["--dtype", "double"], "unknown --dtype 'double'"),
    (["--max-tokens-per-batch", "0"], "--max-tokens-per-batch must be at least 1, not 0"),
    (["--max-tokens-per-batch", "100"], "--max-tokens-per-batch must be at least the encoder's max_length"),
    (["--gpus-per-worker", "1"], "--gpus-per-worker sets up Ray workers: add --ray"),
], ids=["cuda", "device", "dtype", "tokens0", "tokens-short", "gpus-per-worker"])
def test_bad_device_settings_are_refused_in_one_line_before_any_work(tmp_path, tiny_hashencoder, capsys, monkeypatch,
                                                                     args, message):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    write_corpus(tmp_path / "posts.jsonl")
    code = main(["build", str(tmp_path / "posts.jsonl"), "--out", str(tmp_path / "index"), "--encoder",
                 str(tiny_hashencoder), "--quiet", *args])
    error = capsys.readouterr().err.strip()
    assert code == 1 and len(error.splitlines()) == 1 and message in error, error
    assert not (tmp_path / "index").exists()


@pytest.mark.slow
def test_bfloat16_keeps_the_neighbours_of_float32_on_real_tweets(shared_data, minilm_encoder):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from tweeteval import all_tweets

    tweets = all_tweets(shared_data)
    random.Random(3).shuffle(tweets)
    posts, queries = tweets[:1000], tweets[1000:1100]
    half = Encoder(minilm_encoder.config, device="cpu", dtype="bfloat16")

    def top10(encoder):
        scores = encoder.encode(queries) @ encoder.encode(posts).T
        return np.argsort(-scores, axis=1)[:, :10]

    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top10(minilm_encoder), top10(half))])
    assert overlap >= 0.95, overlap


def test_ray_missing_is_named_with_the_extra_to_install(tiny_encoder, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, "hicl_retrieval.encoding.ray_workers", raising=False)
    with pytest.raises(HiclError, match=r"--ray needs Ray .*pip install 'hicl-retrieval\[ray\]'"):
        open_encoding(tiny_encoder.config, DeviceConfig(), RayConfig(address="local"))
