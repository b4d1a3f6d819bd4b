"""scripts/hicl_tweeteval.py: BM25 demonstrations keep the task's dev and test tweets and the example's copies out."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from helpers import built_index

from hicl_retrieval.index.adapter import TopicAdapter
from hicl_retrieval.index.directory import IndexDir
from hicl_retrieval.workflows.adapt import record_adapter

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import hicl_tweeteval  # noqa: E402

WORDS = ["flood river rain", "fire smoke forest", "vote election poll", "music concert song"]


def write_split(folder: Path, split: str, texts: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{split}_text.txt").write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    (folder / f"{split}_labels.txt").write_text("".join(f"{i % 2}\n" for i in range(len(texts))), encoding="utf-8")


def test_bm25_demonstrations_come_from_other_tasks_and_the_train_split(tmp_path):
    datasets = tmp_path / "tweeteval" / "datasets"
    for split in ("train", "val", "test"):
        write_split(datasets / "irony", split, [f"{w} irony {split} {i}" for i, w in enumerate(WORDS)])
    # another task: a copy of an irony test tweet (a tweet of another task may be shown) and others
    write_split(datasets / "emoji", "train",
                [f"{w} emoji {i}" for i, w in enumerate(WORDS)] + [f"RT @x: {WORDS[0]} irony test 0"])

    plain = hicl_tweeteval.write_task(tmp_path, "irony", tmp_path / "work" / "plain")
    out = hicl_tweeteval.demonstrations(tmp_path, tmp_path / "work", "irony", "bm25", plain, {}, None)
    held_back = {line for split in ("val", "test")
                 for line in (datasets / "irony" / f"{split}_text.txt").read_text().splitlines()}
    for split in ("train", "dev", "test"):
        rows = [json.loads(line) for line in (out / f"{split}.jsonl").read_text().splitlines()]
        assert len(rows) == len(WORDS)
        for row in rows:
            shown = row["text0"]
            assert shown and shown not in held_back and shown != row["text"]
            assert shown.split()[0] == row["text"].split()[0]  # the same topic
            assert "RT @x" not in shown or row["text"] != f"{WORDS[0]} irony test 0"  # never the example's copy
    assert len(hicl_tweeteval.held_back(tmp_path, "stance")) == 10  # five targets, dev and test each


def test_table_averages_tasks_per_seed_and_pairs_gains_by_seed():
    results = {
        ("stance", "base"): {0: 0.60, 1: 0.64}, ("irony", "base"): {0: 0.50, 1: 0.52},
        ("stance", "trained"): {0: 0.62, 1: 0.68}, ("irony", "trained"): {0: 0.50, 1: 0.58},
        ("stance", "minilm"): {0: 0.70},  # not run on irony: no average
        ("stance", "bm25"): {1: 0.66}, ("irony", "bm25"): {0: 0.40, 1: 0.50},  # only seed 1 on both
    }
    lines = {line.split()[0]: line for line in hicl_tweeteval.table(results, ["stance", "irony"]).splitlines()}
    assert lines["stance"].split()[1:4] == ["62.0", "±", "2.8"]
    assert lines["average"].split()[1:9] == ["56.5", "±", "2.1", "(2)", "59.5", "±", "4.9", "(2)"]
    assert lines["average"].split()[9:14] == ["-", "58.0", "±", "0.0", "(1)"]
    # trained - base per seed: +1 and +5 points; bm25 seed 1: 58 - 58
    assert lines["vs"].split()[2:10] == ["+3.0", "±", "2.8", "(2)", "-", "+0.0", "±", "0.0"]
    assert lines["vs"].split()[10] == "(1)"
    assert "vs MiniLM" not in hicl_tweeteval.table(results, ["stance", "irony"])


def test_the_adapted_arm_is_paired_with_minilm_by_seed():
    results = {("stance", "minilm"): {0: 0.70, 1: 0.66, 2: 0.60}, ("irony", "minilm"): {0: 0.50, 1: 0.54, 2: 0.5},
               ("stance", "adapted"): {0: 0.68, 1: 0.67}, ("irony", "adapted"): {0: 0.46, 1: 0.51}}
    table = hicl_tweeteval.table(results, ["stance", "irony"]).splitlines()
    [paired] = [line for line in table if line.startswith("vs MiniLM")]
    # adapted - minilm average per seed: seed 0 (0.57 - 0.60), seed 1 (0.59 - 0.60); seed 2 has no adapted run
    assert paired.split()[2:] == ["-2.0", "±", "1.4", "(2)"]
    title = "+HICL adapted"  # right-aligned under the adapted column
    assert paired.index("(2)") + len("(2)") == table[0].index(title) + len(title)


def test_the_adapted_arm_adapts_a_copy_of_the_minilm_database_once_and_stops_where_it_is_not_applied(
        tmp_path, tiny_encoder, monkeypatch):
    work = tmp_path / "work"
    shutil.move(built_index(tmp_path, tiny_encoder), work / "db-minilm")
    calls, applied = [], [False]

    def adapt(path, config):
        calls.append((Path(path), config.untagged_negatives))
        if applied[0]:
            rng = np.random.default_rng(0)
            record_adapter(path, TopicAdapter(down=rng.normal(size=(tiny_encoder.dim, 4)).astype(np.float32),
                                              up=rng.normal(size=(4, tiny_encoder.dim)).astype(np.float32)), {})
        return SimpleNamespace(applied=applied[0], reason="the held-out gain is within its noise",
                               summary=lambda: "adapt summary")

    monkeypatch.setattr(hicl_tweeteval, "adapt_index", adapt)
    with pytest.raises(SystemExit, match="the adapter was not applied, so the adapted arm would equal the MiniLM "
                                         "one: the held-out gain is within its noise"):
        hicl_tweeteval.adapted_database(tmp_path, work)
    applied[0] = True
    assert hicl_tweeteval.adapted_database(tmp_path, work) == work / "db-adapted"
    assert hicl_tweeteval.adapted_database(tmp_path, work) == work / "db-adapted"  # kept: not adapted again
    assert calls == [(work / "db-adapted", hicl_tweeteval.UNTAGGED_NEGATIVES)] * 2
    assert IndexDir(work / "db-adapted").read_manifest().adapter
    assert not IndexDir(work / "db-minilm").read_manifest().adapter  # the MiniLM arm's index is never changed


def test_label_agreement_counts_demonstrations_from_the_train_split(tmp_path):
    def write(path, rows):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")

    folder = tmp_path / "tasks" / "irony"
    write(folder / "plain" / "train.jsonl", [{"labels": "1", "text": "flood river rain"},
                                             {"labels": "0", "text": "fire smoke forest"},
                                             {"labels": "0", "text": "vote election poll"},
                                             {"labels": "0", "text": "@user @user"}])  # no key: never matched
    write(folder / "trained" / "test.jsonl", [
        {"labels": "1", "text": "a", "text0": "RT @user: Flood river rain!"},  # a copy of a train example, same label
        {"labels": "1", "text": "b", "text0": "fire smoke forest"},  # a train example, another label
        {"labels": "0", "text": "c", "text0": "vote election poll"},  # same label
        {"labels": "0", "text": "d", "text0": "a post of another task"},  # not in train
        {"labels": "1", "text": "e", "text0": ""},  # nothing retrieved
    ])
    found, same, chance = hicl_tweeteval.label_agreement(folder / "plain" / "train.jsonl", folder / "trained" / "test.jsonl")
    assert (found, same) == (0.6, 2 / 3)
    assert chance == (1 / 3 + 1 / 3 + 2 / 3 + 2 / 3 + 1 / 3) / 5
    lines = hicl_tweeteval.agreement_table(tmp_path, ["irony", "stance"]).splitlines()
    assert lines[1].split() == ["irony", "0.47", "0.60", "in", "train,", "0.67", "-", "-"]
    assert lines[2].split() == ["stance", "-", "-", "-", "-"]


def test_stripped_queries_search_without_their_hashtags(tmp_path):
    datasets = tmp_path / "tweeteval" / "datasets"
    write_split(datasets / "irony", "train", ["#music #concert by the river"])
    for split in ("val", "test"):
        write_split(datasets / "irony", split, [f"irony {split}"])
    write_split(datasets / "emoji", "train", ["music concert tonight", "river walk today"])
    shown = {}
    for strip in (False, True):
        work = tmp_path / f"work-{strip}"
        work.mkdir()
        hicl_tweeteval.check_work_dir(work, {"strip_hashtags": strip})
        plain = hicl_tweeteval.write_task(tmp_path, "irony", work / "tasks" / "irony" / "plain")
        out = hicl_tweeteval.demonstrations(tmp_path, work, "irony", "bm25", plain, {}, None, strip)
        shown[strip] = json.loads((out / "train.jsonl").read_text())["text0"]
    assert shown == {False: "music concert tonight", True: "river walk today"}
    hicl_tweeteval.check_work_dir(tmp_path / "work-True", {"strip_hashtags": True})  # the same choice: fine
    with pytest.raises(SystemExit, match="another --work-dir"):
        hicl_tweeteval.check_work_dir(tmp_path / "work-True", {"strip_hashtags": False})
    (tmp_path / "work-False" / "demonstrations.json").unlink()  # a directory from before the choice
    with pytest.raises(SystemExit, match="another --work-dir"):
        hicl_tweeteval.check_work_dir(tmp_path / "work-False", {"strip_hashtags": True})


def test_drawn_controls_show_train_examples_oracle_of_the_gold_label(tmp_path):
    datasets = tmp_path / "tweeteval" / "datasets"
    train = [f"{w} train {i}" for i, w in enumerate(WORDS * 5)]  # labels alternate 0, 1
    write_split(datasets / "irony", "train", train)
    for split in ("val", "test"):
        write_split(datasets / "irony", split, [f"{w} {split} {i}" for i, w in enumerate(WORDS * 5)])
    plain = hicl_tweeteval.write_task(tmp_path, "irony", tmp_path / "work" / "tasks" / "irony" / "plain")
    label_of = {text: str(i % 2) for i, text in enumerate(train)}
    agree = {}
    for arm in hicl_tweeteval.DRAWN:
        out = hicl_tweeteval.demonstrations(tmp_path, tmp_path / "work", "irony", arm, plain, {}, None)
        rows = [json.loads(line) for split in ("train", "dev", "test")
                for line in (out / f"{split}.jsonl").read_text().splitlines()]
        assert all(row["text0"] in label_of and row["text0"] != row["text"] for row in rows)
        agree[arm] = sum(label_of[row["text0"]] == row["labels"] for row in rows) / len(rows)
    assert agree["oracle"] == 1.0
    assert 0.2 < agree["random"] < 0.8  # 60 draws of a fair label
    lines = hicl_tweeteval.agreement_table(tmp_path / "work", ["irony"]).splitlines()
    assert lines[0].endswith("+HICL random          +HICL oracle")  # shown once their files exist
    assert lines[1].endswith("1.00 in train, 1.00")
