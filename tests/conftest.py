"""Shared fixtures: the real-data folder, a tiny #Encoder-shaped model, small corpora."""

from __future__ import annotations

import os
import shutil
import string
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parents[1]

# The fuzzing tests (test_fuzz.py, test_serve_fuzz.py) run the ``ci`` profile by default: a fixed set of
# examples (derandomised, so a run is repeatable); ``HYPOTHESIS_PROFILE=explore`` draws new ones, many more.
settings.register_profile("ci", max_examples=300, derandomize=True, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("explore", max_examples=3000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_sessionstart(session) -> None:
    """Exported encoder graphs (encoding/onnx_runtime.py) go to a folder of this session, removed at its end:
    the tests' tiny models are new each session, and the user's own cache stays as it was."""
    if "HICL_CACHE_DIR" not in os.environ:
        os.environ["HICL_CACHE_DIR"] = session.config._hicl_cache = tempfile.mkdtemp(prefix="hicl-test-cache-")


def pytest_sessionfinish(session) -> None:
    made = getattr(session.config, "_hicl_cache", None)
    if made:
        shutil.rmtree(made, ignore_errors=True)


def data_dir() -> Path:
    return Path(os.environ.get("HICL_DATA_DIR", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = data_dir()
    if not (path / "tweeteval").is_dir():
        pytest.skip(f"real tweets not found at {path}; set HICL_DATA_DIR")
    return path


def _write_bertweet_files(directory: Path) -> tuple[Path, Path]:
    """A small BERTweet vocabulary (fastBPE format) and BPE codes that cover any ASCII text."""
    pieces = list(string.ascii_letters + string.digits + string.punctuation)
    words = ["the", "flood", "fire", "river", "@USER", "HTTPURL", "rain", "game", "music", "vote"]
    merges = [("t", "h"), ("th", "e</w>"), ("f", "l"), ("r", "i"), ("e", "r</w>"), ("o", "o")]
    vocab = [f"{p}@@" for p in pieces] + pieces + words + ["th@@", "the", "fl@@", "ri@@", "er", "oo@@", "oo"]
    seen: dict[str, None] = dict.fromkeys(vocab)
    vocab_file, merges_file = directory / "vocab.txt", directory / "bpe.codes"
    vocab_file.write_text("".join(f"{token} 1\n" for token in seen), encoding="utf-8")
    merges_file.write_text("".join(f"{a} {b} 1\n" for a, b in merges), encoding="utf-8")
    return vocab_file, merges_file


@pytest.fixture(scope="session")
def tiny_hashencoder(tmp_path_factory) -> Path:
    """A directory shaped like ``albertan017/hashencoder``: RobertaModel + BertweetTokenizer.

    Random weights, a few thousand parameters: fast, and loaded by exactly the code that
    loads the real model.
    """
    import torch
    from transformers import BertweetTokenizer, RobertaConfig, RobertaModel

    directory = tmp_path_factory.mktemp("hashencoder")
    source = tmp_path_factory.mktemp("bertweet-source")
    vocab_file, merges_file = _write_bertweet_files(source)
    tokenizer = BertweetTokenizer(str(vocab_file), str(merges_file), normalization=True)
    tokenizer.save_pretrained(directory)
    torch.manual_seed(0)
    config = RobertaConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=130, pad_token_id=tokenizer.pad_token_id,
        type_vocab_size=1, initializer_range=0.5,  # large weights: vectors that tell posts apart
    )
    RobertaModel(config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_encoder(tiny_hashencoder):
    """An `Encoder` of the tiny model with the hashencoder preset's settings."""
    import dataclasses

    from hicl_retrieval.core.config import resolve_encoder
    from hicl_retrieval.encoding.encoder import Encoder

    config = dataclasses.replace(resolve_encoder("hashencoder"), model=str(tiny_hashencoder))
    return Encoder(config)


@pytest.fixture(scope="session")
def minilm_encoder():
    from hicl_retrieval.core.config import resolve_encoder
    from hicl_retrieval.encoding.encoder import Encoder

    return Encoder(resolve_encoder("minilm"))
