"""train-encoder on a tiny model: the split, gradient caching, resume, and the model directory it writes."""

import dataclasses
import json
import random

import pytest
import torch
from helpers import TOPICS
from safetensors.torch import load_file

from hicl_retrieval import HiclError
from hicl_retrieval.cli import main
from hicl_retrieval.core.config import TrainConfig, resolve_encoder
from hicl_retrieval.corpus import Corpus
from hicl_retrieval.encoding.encoder import Encoder
from hicl_retrieval.workflows import train_encoder as training
from hicl_retrieval.workflows.train_encoder import load_training_data, train_encoder


def write_tagged_posts(path, count=240, seed=0):
    rng = random.Random(seed)
    lines = [f"{TOPICS[i % 5]} note {i} {rng.choice(TOPICS).split()[0]} #topic{i % 5} #sub{i % 40}" for i in range(count)]
    untagged = [f"a post without tags number {i} {rng.choice(TOPICS)}" for i in range(20)]  # negatives
    path.write_text("\n".join(lines + [lines[0]] + untagged) + "\n", encoding="utf-8")  # one copy, dropped
    return lines


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "posts.txt"
    write_tagged_posts(path)
    return path


@pytest.fixture
def config(tiny_encoder):
    return TrainConfig(base=tiny_encoder.config, steps=4, batch_size=4, untagged_negatives=3, max_share=0.05,
                       held_out=20, eval_every=2, eval_corpus=60, checkpoint_every=2, learning_rate=1e-3,
                       progress=False)


def test_held_out_posts_are_never_trained_on(corpus, config):
    data = load_training_data(Corpus([corpus]), config)
    assert data.read == 261 and data.repeated == 1 and len(data.texts) == 260
    assert sorted(data.vocabulary.too_common) == [f"#topic{i}" for i in range(5)]  # in 20% of posts each
    assert len(data.held_out) == 20 and not set(data.held_out) & set(data.train)
    assert set(data.held_out) <= set(data.eval_corpus) and len(data.eval_corpus) == 60
    assert all(data.vocabulary.eligible(data.tags[i]) for i in data.held_out)
    with pytest.raises(HiclError, match="hold out at most half"):
        load_training_data(Corpus([corpus]), dataclasses.replace(config, held_out=200))


def test_gradient_caching_gives_the_batch_gradient(tiny_encoder, config):
    encoder = Encoder(tiny_encoder.config)
    encoder.model.eval()  # no dropout: both ways must see the same network
    anchors = [f"{topic} anchor" for topic in TOPICS] + ["a longer anchor post about the river and the rain"]
    positives = [f"{topic} positive #tag" for topic in TOPICS] + ["rain"]

    negatives = ["music festival lineup", "vote"]

    def gradients(grad_cache):
        encoder.model.zero_grad()
        loss = training._train_step(encoder, anchors, positives, dataclasses.replace(config, grad_cache=grad_cache),
                                    negatives)
        return loss, [p.grad.clone() for p in encoder.model.parameters() if p.grad is not None]

    whole_loss, whole = gradients(None)
    cached_loss, cached = gradients(3)
    assert cached_loss == pytest.approx(whole_loss, rel=1e-5)
    assert len(cached) == len(whole)
    scale = max(g.abs().max().item() for g in whole)
    for a, b in zip(whole, cached):  # equal up to float error: chunks pad to other lengths
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4 * scale)


def test_trained_directory_builds_and_queries(corpus, config, tmp_path, capsys):
    out = tmp_path / "model"
    report = train_encoder([corpus], out, config)
    assert [row["step"] for row in report.log] == [0, 2, 4, 4]  # the last: mixed with the base weights
    assert report.log[0]["loss"] is None and report.log[-2]["loss"] > 0 and report.log[-1]["base_share"] == 0.5
    assert {"hit@1", "hit@10", "precision@10", "mrr"} <= set(report.log[-1])
    assert not (out / training.CHECKPOINT).exists()
    held = [json.loads(line) for line in (out / training.HELD_OUT).read_text().splitlines()]
    assert len(held) == 20 and all(row["hashtags"] for row in held)
    assert len((out / training.LOG_FILE).read_text().splitlines()) == 4

    trained = resolve_encoder(str(out))
    assert trained.model == str(out.resolve()) and trained.package is None
    assert (trained.pooling, trained.text_normalization) == (config.base.pooling, config.base.text_normalization)
    assert main(["build", str(corpus), "--out", str(tmp_path / "index"), "--encoder", str(out), "--quiet"]) == 0
    assert main(["query", str(tmp_path / "index"), "river flooding downtown", "-k", "3", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out.splitlines()[-1])["hits"]
    assert len(hits) == 3

    with pytest.raises(HiclError, match="already holds a trained encoder"):
        train_encoder([corpus], out, config)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(HiclError, match="not empty"):
        train_encoder([corpus], tmp_path / "other", config)


def test_an_interrupted_training_resumes_to_the_same_weights(corpus, config, tmp_path, monkeypatch):
    train_encoder([corpus], tmp_path / "straight", config)

    real_step, calls = training._train_step, []

    def failing_step(*args):
        calls.append(1)
        if len(calls) == 3:  # after the checkpoint at step 2
            raise KeyboardInterrupt
        return real_step(*args)

    monkeypatch.setattr(training, "_train_step", failing_step)
    with pytest.raises(KeyboardInterrupt):
        train_encoder([corpus], tmp_path / "resumed", config)
    assert (tmp_path / "resumed" / training.CHECKPOINT).exists()
    with pytest.raises(HiclError, match="other settings"):
        train_encoder([corpus], tmp_path / "resumed", dataclasses.replace(config, learning_rate=2e-3))
    report = train_encoder([corpus], tmp_path / "resumed", config)
    assert report.resumed_at == 2 and len(calls) == 5

    straight = load_file(tmp_path / "straight" / "model.safetensors")
    resumed = load_file(tmp_path / "resumed" / "model.safetensors")
    assert straight.keys() == resumed.keys()
    for name in straight:
        torch.testing.assert_close(straight[name], resumed[name], rtol=0, atol=0)
    straight_log = json.loads((tmp_path / "straight" / training.REPORT_FILE).read_text())["log"]
    assert [{**row, "seconds": 0} for row in report.log] == [{**row, "seconds": 0} for row in straight_log]


def test_base_share_averages_the_base_weights_in(corpus, config, tmp_path):
    unmixed = train_encoder([corpus], tmp_path / "trained", dataclasses.replace(config, base_share=0.0))
    assert [row["step"] for row in unmixed.log] == [0, 2, 4]
    report = train_encoder([corpus], tmp_path / "mixed", dataclasses.replace(config, base_share=0.25))
    assert [row["step"] for row in report.log] == [0, 2, 4, 4] and report.log[-1]["base_share"] == 0.25
    assert "4 +0.25 base" in training.log_table(report.log)
    trained = load_file(tmp_path / "trained" / "model.safetensors")
    mixed = load_file(tmp_path / "mixed" / "model.safetensors")
    base = Encoder(config.base).model.state_dict()
    assert not torch.equal(trained["encoder.layer.0.attention.self.query.weight"],
                           base["encoder.layer.0.attention.self.query.weight"])
    for name, weight in mixed.items():
        expected = 0.75 * trained[name] + 0.25 * base[name] if weight.is_floating_point() else trained[name]
        torch.testing.assert_close(weight, expected)


def test_settings_are_checked(tiny_encoder):
    with pytest.raises(HiclError, match="anchor-drop"):
        TrainConfig(base=tiny_encoder.config, anchor_drop=1.5)
    with pytest.raises(HiclError, match="base-share"):
        TrainConfig(base=tiny_encoder.config, base_share=-0.1)
    with pytest.raises(HiclError, match="int8"):
        TrainConfig(base=dataclasses.replace(tiny_encoder.config, quantize="int8"))
    with pytest.raises(HiclError, match="--batch-size must be at least 2"):
        TrainConfig(base=tiny_encoder.config, batch_size=1)


class _Tied(torch.nn.Module):
    """One linear layer under two names, as shared input/output embeddings are."""

    def __init__(self, seed):
        super().__init__()
        torch.manual_seed(seed)
        self.inp = torch.nn.Linear(3, 3)
        self.out = self.inp


def test_a_tied_weight_is_mixed_once(config, monkeypatch):
    trained, base = _Tied(0), _Tied(1)
    assert set(trained.state_dict()) == {"inp.weight", "inp.bias", "out.weight", "out.bias"}
    before = {name: weight.clone() for name, weight in trained.state_dict().items()}
    monkeypatch.setattr(training, "Encoder", lambda encoder_config, **_: type("Base", (), {"model": base})())
    training._mix_in_base(trained, dataclasses.replace(config, base_share=0.25))
    for name, weight in trained.state_dict().items():
        torch.testing.assert_close(weight, 0.75 * before[name] + 0.25 * base.state_dict()[name])
