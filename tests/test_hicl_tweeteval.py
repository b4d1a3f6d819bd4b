"""scripts/hicl_tweeteval.py: BM25 demonstrations keep the task's dev and test tweets and the example's copies out."""

from __future__ import annotations

import json
import sys
from pathlib import Path

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
