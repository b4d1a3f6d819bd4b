"""The encoder code path of the HICL #Encoder, exercised on a tiny model of the same shape."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from hicl_retrieval.core.config import MODEL_PRESET_FILE, EncoderConfig, preset_names, resolve_encoder
from hicl_retrieval.core.errors import HiclError
from hicl_retrieval.encoding.encoder import Encoder

TWEETS = [
    "@AlbertaGov the Bow River is over its banks again 😟 http://t.co/abc #yycflood",
    "short one",
    "Can't believe it’s snowing in June… #yyc",
    "RT @news: Evacuation orders for High River, Canmore and parts of Calgary's downtown core tonight",
]


def reference_vectors(model_dir: Path, texts: list[str]) -> np.ndarray:
    """The HICL reference recipe: tokenizer(normalization=True), one post at a time, pooler_output."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), normalization=True)
    model = AutoModel.from_pretrained(str(model_dir)).eval()
    rows = []
    with torch.no_grad():
        for text in texts:
            encoded = tokenizer(text, truncation=True, max_length=128, return_tensors="pt")
            rows.append(model(**encoded).pooler_output[0].numpy())
    rows = np.asarray(rows)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_hashencoder_preset_matches_the_reference_recipe(tiny_hashencoder, tiny_encoder):
    assert type(tiny_encoder.tokenizer).__name__ == "BertweetTokenizer"
    assert tiny_encoder.config.pooling == "pooler" and tiny_encoder.config.text_normalization == "bertweet"
    ours = tiny_encoder.encode(TWEETS, batch_size=3)
    np.testing.assert_allclose(ours, reference_vectors(tiny_hashencoder, TWEETS), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-6)


def test_length_sorted_batches_come_back_in_input_order(tiny_encoder):
    texts = [f"post {'word ' * (i * 7 % 23)}{i}" for i in range(40)]
    batched = tiny_encoder.encode(texts, batch_size=8)
    alone = np.vstack([tiny_encoder.encode([t]) for t in texts])
    np.testing.assert_allclose(batched, alone, atol=1e-5)
    assert tiny_encoder.encode([]).shape == (0, tiny_encoder.dim)


def test_long_posts_are_truncated_to_max_length(tiny_encoder):
    long_post = "flood " * 500
    config = dataclasses.replace(tiny_encoder.config, max_length=16)
    short = Encoder(config)
    assert short.encode([long_post]).shape == (1, short.dim)
    np.testing.assert_allclose(short.encode([long_post]), short.encode(["flood " * 40]), atol=1e-5)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_other_poolings(tiny_hashencoder, pooling):
    encoder = Encoder(resolve_encoder(str(tiny_hashencoder), pooling=pooling))
    vectors = encoder.encode(TWEETS)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    tokens = encoder.tokenizer(TWEETS[1], return_tensors="pt")
    with torch.no_grad():
        hidden = encoder.model(**tokens).last_hidden_state[0]
    expected = hidden[0] if pooling == "cls" else hidden.mean(dim=0)
    np.testing.assert_allclose(vectors[1], (expected / expected.norm()).numpy(), atol=1e-5)


def test_resolve_encoder_presets_files_and_directories(tiny_hashencoder, tmp_path):
    assert {"hashencoder", "minilm"} <= set(preset_names())
    assert resolve_encoder("hashencoder").model == "albertan017/hashencoder"
    assert resolve_encoder("minilm", pooling="cls").pooling == "cls"
    assert resolve_encoder("someone/some-model") == EncoderConfig(model="someone/some-model")
    preset = tmp_path / "mine.toml"
    preset.write_text('[encoder]\nmodel = "x/y"\npooling = "cls"\nmax_length = 64\n')
    assert resolve_encoder(str(preset)) == EncoderConfig(model="x/y", pooling="cls", max_length=64, preset="mine")
    plain = resolve_encoder(str(tiny_hashencoder))
    assert (plain.model, plain.pooling) == (str(tiny_hashencoder.resolve()), "mean")
    model_dir = tmp_path / "trained"
    model_dir.mkdir()
    (model_dir / MODEL_PRESET_FILE).write_text('[encoder]\nmodel = "ignored"\npooling = "cls"\ntext_normalization = "bertweet"\n')
    own = resolve_encoder(str(model_dir))
    assert (own.model, own.pooling, own.text_normalization) == (str(model_dir.resolve()), "cls", "bertweet")


@pytest.mark.parametrize(
    ("spec", "message"),
    [("no-such-preset", "unknown encoder"), ("./missing.toml", "does not exist")],
)
def test_resolve_encoder_errors(spec, message):
    with pytest.raises(HiclError, match=message):
        resolve_encoder(spec)


def test_bad_settings_are_refused(tmp_path):
    with pytest.raises(HiclError, match="unknown pooling"):
        EncoderConfig(model="x/y", pooling="max")
    bad = tmp_path / "bad.toml"
    bad.write_text('[encoder]\nmodel = "x/y"\npoolin = "cls"\n')
    with pytest.raises(HiclError, match="unknown key"):
        resolve_encoder(str(bad))


def test_unreachable_hub_model_names_the_offline_options(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HiclError) as error:
        Encoder(EncoderConfig(model="hicl-test/not-a-model-anywhere"))
    assert "--encoder minilm" in str(error.value) and "local directory" in str(error.value)


def test_missing_directory_model_is_a_clear_error(tmp_path):
    empty = tmp_path / "empty-model"
    empty.mkdir()
    with pytest.raises(HiclError, match="holds a Hugging Face model"):
        Encoder(EncoderConfig(model=str(empty)))


def test_int8_quantisation_stays_close_to_float32(tiny_hashencoder, tiny_encoder):
    quantized = Encoder(dataclasses.replace(tiny_encoder.config, quantize="int8"))
    assert any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in quantized.model.modules())
    ours, exact = quantized.encode(TWEETS), tiny_encoder.encode(TWEETS)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert np.min(np.sum(ours * exact, axis=1)) > 0.95  # cosine to the float32 vector
    with pytest.raises(HiclError, match="unknown quantize"):
        EncoderConfig(model="x/y", quantize="int4")


def test_20_an_unreachable_hub_fails_in_seconds_not_a_minute(monkeypatch):
    import time

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    started = time.perf_counter()
    with pytest.raises(HiclError) as error:
        Encoder(EncoderConfig(model="hicl-test/not-a-model-anywhere"))
    assert time.perf_counter() - started < 10
    assert "the hub cannot be reached from this machine and the model is not in the local cache" in str(error.value)
    assert "--encoder minilm" in str(error.value)


def test_a_fast_tokenizer_gives_the_ids_of_the_hugging_face_call(shared_data, minilm_encoder):
    """The encoder tokenises through the Rust tokenizer directly (its Python wrapper costs as much again): the same
    ids as the tokenizer's own call, on real tweets, a post cut at max_length, and texts holding special tokens."""
    lines = []
    for name in ("emotion/train_text.txt", "hate/train_text.txt", "offensive/train_text.txt"):
        lines += Path(shared_data, "tweeteval", "datasets", name).read_text(encoding="utf-8").splitlines()[:700]
    lines += ["flood " * 500, "", "[CLS] the [SEP] river [MASK]", "東京 🌊 #Überschwemmung"]
    assert minilm_encoder.backend is not None
    config = minilm_encoder.config
    expected = minilm_encoder.tokenizer(lines, truncation=True, max_length=config.max_length)["input_ids"]
    assert minilm_encoder.tokenize(lines) == expected
    assert max(map(len, expected)) == config.max_length
    minilm_encoder.embed(lines[:4])  # the tokenizer's own call, padding: its settings never reach the copy
    assert minilm_encoder.tokenize(lines[:50]) == expected[:50]


def test_a_python_tokenizer_is_called_as_it_is(tiny_encoder):
    assert tiny_encoder.backend is None  # BERTweet's
    assert tiny_encoder.tokenize(TWEETS) == tiny_encoder.tokenizer(
        tiny_encoder.prepare(TWEETS), truncation=True, max_length=128)["input_ids"]
