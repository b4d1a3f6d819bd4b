"""finetune on a tiny model: official task metrics, both stages, the plain baseline, reproducible seeds."""

import json

import numpy as np
import pytest
from helpers import TOPICS

from hicl_retrieval import HiclError
from hicl_retrieval.cli import main
from hicl_retrieval.core.config import FinetuneConfig
from hicl_retrieval.learning.scoring import task_score
from hicl_retrieval.workflows import finetune as finetune_module
from hicl_retrieval.workflows.finetune import Example, FinetuneReport, SeedResult, finetune, read_jsonl_split


def test_official_metrics_on_hand_made_cases():
    # stance: mean F1 of against (1) and favor (2); none (0) does not count
    assert task_score("stance", [0, 1, 2, 1], [0, 1, 1, 1]) == pytest.approx((0.8 + 0.0) / 2)
    assert task_score("irony", [1, 1, 0, 0], [1, 0, 0, 1]) == pytest.approx(0.5)  # F1 of the ironic class
    # macro-F1 over every class: class 0 F1 2/3, class 1 F1 0, class 2 F1 1
    assert task_score("emotion", [0, 0, 1, 2], [0, 1, 0, 2]) == pytest.approx((0.5 + 0 + 1) / 3)
    assert task_score("sentiment", [0, 0, 1, 2], [0, 1, 1, 1]) == pytest.approx((0.5 + 1 + 0) / 3)  # macro recall
    with pytest.raises(HiclError, match="unknown task"):
        task_score("weather", [0], [0])


def task(count, offset=0):
    # the label is the topic; a demonstration of the same topic helps, the example alone is short
    return [Example(f"{TOPICS[i % 3].split()[0]} {i + offset}", i % 3, f"{TOPICS[i % 3]} #topic{i % 3}")
            for i in range(count)]


@pytest.fixture
def config(tiny_hashencoder):
    return FinetuneConfig(backbone=str(tiny_hashencoder), task="emotion", epochs=2, trigger_epochs=1, patience=2,
                          batch_size=8, seeds=(0, 1), learning_rate=1e-3, progress=False)


def test_two_stages_and_reproducible_seeds(config, monkeypatch):
    runs, test_predictions = [], []  # each seed's run, and what its model predicted for its test split
    original_run, original_predict = finetune_module._Run.__init__, finetune_module._predict

    def run(self, *args, **kwargs):
        original_run(self, *args, **kwargs)
        runs.append(self)

    def predict(model, loader, device):
        predicted = original_predict(model, loader, device)
        if loader is runs[-1].loaders["test"]:
            gold = [label for batch in loader for label in batch["labels"].tolist()]  # in the loader's order
            test_predictions.append((gold, predicted))
        return predicted

    monkeypatch.setattr(finetune_module._Run, "__init__", run)
    monkeypatch.setattr(finetune_module, "_predict", predict)
    test = task(12, 200)
    report = finetune(task(48), task(12, 100), test, config)
    monkeypatch.undo()
    assert [r.seed for r in report.results] == [0, 1] and len(test_predictions) == 2
    for result, (gold, predicted) in zip(report.results, test_predictions):
        assert sorted(gold) == sorted(e.label for e in test)  # the test split, each example once
        assert result.test == task_score("emotion", gold, predicted)  # the final model's score on it
        assert result.dev >= result.dev_stage_one
        assert 1 <= result.epochs <= 2 and result.trigger_epochs == 1
    again = finetune(task(48), task(12, 100), task(12, 200), FinetuneConfig(**{**config.__dict__, "seeds": (1,)}))
    assert again.results[0].test == report.results[1].test and again.results[0].dev == report.results[1].dev
    plain = finetune(task(48), task(12, 100), task(12, 200), FinetuneConfig(**{**config.__dict__, "context": False}))
    assert all(r.trigger_epochs == 0 for r in plain.results) and plain.context is False
    scores = [r.test for r in report.results]
    assert report.std == pytest.approx(np.std(scores, ddof=1)) and report.mean == pytest.approx(np.mean(scores))
    assert report.to_dict()["std"] == report.std and report.to_dict()["mean"] == report.mean


@pytest.mark.parametrize("scores", [[0.5, 0.7], [0.2, 0.4, 0.9], [0.6]])
def test_report_mean_and_std_are_those_of_the_seeds_test_scores(scores):
    report = FinetuneReport("emotion", True, [SeedResult(seed, 0.0, 0.0, score, 1, 1, 0.0)
                                              for seed, score in enumerate(scores)])
    assert report.mean == pytest.approx(np.mean(scores))
    assert report.std == pytest.approx(np.std(scores, ddof=1) if len(scores) > 1 else 0.0)  # the sample std


def test_context_needs_demonstrations(config):
    bare = [Example("flood", 0)]
    with pytest.raises(HiclError, match="run `augment`"):
        finetune(bare, bare, bare, config)


def test_command_line_reads_both_layouts(tmp_path, tiny_hashencoder, capsys):
    folder = tmp_path / "irony"
    folder.mkdir()
    for split, rows in (("train", task(24)), ("val", task(9, 100)), ("test", task(9, 200))):
        (folder / f"{split}_text.txt").write_text("".join(f"{e.text}\n" for e in rows))
        (folder / f"{split}_labels.txt").write_text("".join(f"{e.label % 2}\n" for e in rows))
        (tmp_path / f"{split}.jsonl").write_text(
            "".join(json.dumps({"labels": str(e.label % 2), "text": e.text, "text0": e.demonstration}) + "\n"
                    for e in rows))
    common = ["finetune", "--task", "irony", "--backbone", str(tiny_hashencoder), "--epochs", "1", "--seeds", "0",
              "--trigger-epochs", "1", "--quiet"]
    assert main(common + ["--data", str(folder), "--no-context"]) == 0
    assert "irony (plain): test" in capsys.readouterr().out
    assert main(common + ["--train", str(tmp_path / "train.jsonl"), "--dev", str(tmp_path / "val.jsonl"),
                          "--test", str(tmp_path / "test.jsonl"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["context"] is True and len(report["seeds"]) == 1
    assert read_jsonl_split(tmp_path / "train.jsonl")[0].demonstration == task(1)[0].demonstration


def test_length_grouped_batches_cover_each_example_once_with_less_padding():
    import random

    from hicl_retrieval.workflows.finetune import _LengthGroupedBatches

    lengths = [(i * 37) % 101 + 5 for i in range(1000)]
    grouped, order = _LengthGroupedBatches(lengths, 16, seed=3), random.Random(3).sample(range(1000), 1000)
    shuffled = [order[i : i + 16] for i in range(0, 1000, 16)]

    def padding(batches):
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)

    first, second = list(grouped), list(grouped)
    for epoch in (first, second):
        assert sorted(i for batch in epoch for i in batch) == list(range(1000)) and len(epoch) == len(grouped) == 63
    assert first != second  # a new order each epoch
    assert first == list(_LengthGroupedBatches(lengths, 16, seed=3))  # fixed by the seed
    assert padding(first) < 0.2 * padding(shuffled)
