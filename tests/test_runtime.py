"""ONNX Runtime as the encoder's runtime: PyTorch's vectors, the graph cached and checked, and every way it falls back."""

import dataclasses
import logging
import pickle
import subprocess
import sys

import numpy as np
import pytest

from hicl_retrieval.core.config import DeviceConfig, resolve_encoder
from hicl_retrieval.core.errors import HiclError
from hicl_retrieval.encoding import onnx_runtime
from hicl_retrieval.encoding.encoder import Encoder

pytest.importorskip("onnxruntime")

TWEETS = [
    "@AlbertaGov the Bow River is over its banks again 😟 http://t.co/abc #yycflood",
    "short one",
    "Can't believe it’s snowing in June… #yyc",
    "RT @news: Evacuation orders for High River, Canmore and parts of Calgary's downtown core tonight " * 3,
    "",
]


def cached_graphs() -> list:
    return sorted((onnx_runtime.cache_root() / "onnx").glob("*/model.onnx"))


def assert_same_vectors(ours: np.ndarray, theirs: np.ndarray) -> None:
    cosine = np.sum(ours * theirs, axis=1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    assert cosine.min() >= 0.99999
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


@pytest.mark.parametrize("pooling, normalize", [("pooler", True), ("cls", True), ("mean", True), ("mean", False)])
def test_onnx_gives_pytorchs_vectors_for_every_pooling(tiny_hashencoder, pooling, normalize):
    config = dataclasses.replace(resolve_encoder(str(tiny_hashencoder), pooling=pooling), normalize_vectors=normalize)
    eager, onnx = Encoder(config, runtime="torch"), Encoder(config, runtime="onnx")
    assert (eager.runtime, onnx.runtime) == ("torch", "onnx") and onnx.agreement >= 0.99999
    texts = TWEETS + [f"post {'word ' * (i * 7 % 23)}{i}" for i in range(40)]
    assert_same_vectors(onnx.encode(texts, batch_size=8), eager.encode(texts, batch_size=8))
    assert_same_vectors(np.vstack([onnx.encode([t]) for t in TWEETS]), eager.encode(TWEETS))


def test_minilm_in_onnx_gives_pytorchs_vectors_of_real_tweets(shared_data):
    tweets = (shared_data / "tweeteval/datasets/emotion/train_text.txt").read_text().splitlines()[:300]
    eager, onnx = (Encoder(resolve_encoder("minilm"), device="cpu", runtime=r) for r in ("torch", "auto"))
    assert onnx.runtime == "onnx"
    assert_same_vectors(onnx.encode(tweets), eager.encode(tweets))


def test_the_graph_is_exported_once_and_reused(tiny_hashencoder, monkeypatch):
    config = resolve_encoder(str(tiny_hashencoder), pooling="mean")
    first = Encoder(config, runtime="onnx")
    graph = first.onnx.path
    made = graph.stat().st_mtime_ns

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr("torch.onnx.export", no_export)
    again = Encoder(config, runtime="onnx")
    assert again.onnx.path == graph and graph.stat().st_mtime_ns == made
    assert not list(graph.parent.glob(".export-*"))  # no temporary file left


def test_a_damaged_cached_graph_is_exported_again(tiny_hashencoder):
    config = resolve_encoder(str(tiny_hashencoder), pooling="cls")
    graph = Encoder(config, runtime="onnx").onnx.path
    graph.write_bytes(graph.read_bytes()[:1000])
    repaired = Encoder(config, runtime="onnx")
    assert repaired.runtime == "onnx" and graph.stat().st_size > 1000
    assert_same_vectors(repaired.encode(TWEETS), Encoder(config, runtime="torch").encode(TWEETS))


def test_a_changed_model_is_exported_anew(tmp_path, tiny_hashencoder):
    import shutil

    import torch
    from transformers import AutoModel

    copy = tmp_path / "model"
    shutil.copytree(tiny_hashencoder, copy)
    config = resolve_encoder(str(copy), pooling="mean")
    before = Encoder(config, runtime="onnx")
    model = AutoModel.from_pretrained(copy)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(0.5)
    model.save_pretrained(copy)
    after = Encoder(config, runtime="onnx")
    assert after.onnx.path != before.onnx.path
    assert_same_vectors(after.encode(TWEETS), Encoder(config, runtime="torch").encode(TWEETS))


@pytest.mark.parametrize("change, message", [
    ({"dtype": "bfloat16"}, "--runtime onnx: it runs float32 only, not bfloat16"),
    ({"quantize": "int8"}, "--runtime onnx: int8 is PyTorch's quantisation; drop --int8"),
])
def test_onnx_is_refused_where_it_does_not_suit(tiny_encoder, change, message):
    dtype = change.pop("dtype", None)
    config = dataclasses.replace(tiny_encoder.config, **change)
    with pytest.raises(HiclError, match=message):
        Encoder(config, device="cpu", dtype=dtype, runtime="onnx")
    assert Encoder(config, device="cpu", dtype=dtype, runtime="auto").runtime == "torch"


def test_without_onnx_runtime_auto_runs_torch_and_onnx_says_what_to_install(tiny_encoder, monkeypatch):
    monkeypatch.setattr("hicl_retrieval.encoding.encoder.runtime_version", lambda: None)
    assert Encoder(tiny_encoder.config).runtime == "torch"
    with pytest.raises(HiclError, match=r"ONNX Runtime is not installed; install it with: pip install "
                                        r"'hicl-retrieval\[onnx\]'"):
        Encoder(tiny_encoder.config, runtime="onnx")


def test_vectors_that_differ_from_pytorchs_are_never_used(tiny_encoder, monkeypatch, caplog):
    def off(self, input_ids, attention_mask):
        vectors = self.session.run(None, {"input_ids": input_ids, "attention_mask": attention_mask})[0]
        vectors[:, 0] += 0.05  # a graph that computes something else
        return vectors

    monkeypatch.setattr(onnx_runtime.OnnxModel, "__call__", off)
    with caplog.at_level(logging.WARNING):
        encoder = Encoder(tiny_encoder.config)
    assert encoder.runtime == "torch" and encoder.agreement < 0.99999
    assert "differ from PyTorch's" in caplog.text and "encoding with PyTorch" in caplog.text
    with pytest.raises(HiclError, match=r"--runtime onnx: ONNX Runtime's vectors of .* differ from PyTorch's "
                                        r"\(least cosine 0\.\d+, below 0\.99999\); use --runtime torch"):
        Encoder(tiny_encoder.config, runtime="onnx")


def test_a_model_that_cannot_be_exported_runs_in_pytorch(tiny_encoder, monkeypatch, caplog, tmp_path):
    monkeypatch.setenv("HICL_CACHE_DIR", str(tmp_path))  # nothing cached: the export is tried

    def fails(*args, **kwargs):
        raise RuntimeError("Unsupported operator aten::weird\nmore detail")

    monkeypatch.setattr("torch.onnx.export", fails)
    with caplog.at_level(logging.WARNING):
        assert Encoder(tiny_encoder.config).runtime == "torch"
    assert "cannot run" in caplog.text and "RuntimeError: Unsupported operator aten::weird" in caplog.text
    with pytest.raises(HiclError, match=r"--runtime onnx: cannot run .* in ONNX Runtime \(RuntimeError: "
                                        r"Unsupported operator aten::weird\); use --runtime torch$"):
        Encoder(tiny_encoder.config, runtime="onnx")
    assert not list(tmp_path.rglob("*.onnx"))


def test_an_encoder_sent_to_another_process_runs_onnx_there(tiny_encoder):
    onnx = Encoder(tiny_encoder.config, runtime="onnx")
    copy = pickle.loads(pickle.dumps(onnx))
    assert copy.runtime == "onnx" and copy.onnx.session is None
    np.testing.assert_allclose(copy.encode(TWEETS), onnx.encode(TWEETS), atol=1e-6)


def test_training_through_embed_turns_encode_to_pytorch(tiny_encoder):
    encoder = Encoder(tiny_encoder.config, runtime="onnx")
    encoder.embed(TWEETS[:2])
    assert encoder.runtime == "torch"


def test_unknown_runtime_is_refused_in_one_line(tmp_path, tiny_encoder):
    with pytest.raises(HiclError, match=r"unknown --runtime 'tensorrt'; choose one of auto, torch, onnx"):
        DeviceConfig(runtime="tensorrt")
    with pytest.raises(HiclError, match="unknown --runtime"):
        Encoder(tiny_encoder.config, runtime="tensorrt")
    result = subprocess.run([sys.executable, "-m", "hicl_retrieval.cli", "query", str(tmp_path), "flood",
                             "--runtime", "tensorrt"], capture_output=True, text=True)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "hicl-retrieval: error: unknown --runtime 'tensorrt'; choose one of auto, torch, onnx"]


def test_an_index_answers_alike_in_either_runtime(tmp_path, tiny_encoder):
    from helpers import built_index

    from hicl_retrieval import Retriever

    index = built_index(tmp_path, tiny_encoder)
    queries = ["river flooding downtown", "phone launch", "debate tonight #topic4"]
    answers = {}
    for runtime in ("torch", "onnx"):
        with Retriever(index, running=DeviceConfig(runtime=runtime)) as retriever:
            assert retriever.encoder.runtime == runtime
            answers[runtime] = retriever.search(queries, k=5)
    for eager, onnx in zip(answers["torch"], answers["onnx"]):
        assert [hit.post_id for hit in onnx.hits] == [hit.post_id for hit in eager.hits]
        np.testing.assert_allclose([h.score for h in onnx.hits], [h.score for h in eager.hits], atol=1e-5)
