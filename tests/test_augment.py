"""augment: demonstrations in the reference HICL format, never the query and never an excluded split."""

import json

import pytest
from helpers import TOPICS

from hicl_retrieval import HiclError
from hicl_retrieval.cli import main
from hicl_retrieval.core.config import BuildConfig
from hicl_retrieval.workflows.augment import read_examples
from hicl_retrieval.workflows.build import build_index


@pytest.fixture(scope="module")
def database(tmp_path_factory, tiny_encoder):
    root = tmp_path_factory.mktemp("augment")
    (root / "other_tasks.txt").write_text("".join(f"{TOPICS[i % 5]} story {i} #topic{i % 5}\n" for i in range(60)))
    test_split = [f"{TOPICS[i % 5]} test example {i}" for i in range(10)]
    (root / "test_text.txt").write_text("\n".join(test_split) + "\n")
    # the same examples again with a hashtag (the way a label can hide in a re-tagged copy)
    (root / "retagged.txt").write_text("".join(f"#label{i % 3} {text}\n" for i, text in enumerate(test_split)))
    build_index([root / "other_tasks.txt", root / "test_text.txt", root / "retagged.txt"], root / "db",
                BuildConfig(encoder=tiny_encoder.config, progress=False), encoder=tiny_encoder)
    examples = root / "test.jsonl"
    examples.write_text("".join(json.dumps({"labels": i % 3, "text": text}) + "\n" for i, text in enumerate(test_split)))
    return root, test_split


def test_output_format_and_exclusions(database, capsys):
    root, test_split = database
    out = root / "test_hicl_top3.jsonl"
    assert main(["augment", str(root / "db"), "--input", str(root / "test.jsonl"), "--out", str(out), "--top", "3",
                 "--exclude-source", "test_text.txt", "--exclude-source", "retagged.txt"]) == 0
    assert "10 examples with 3 retrieved posts" in capsys.readouterr().out
    lines = out.read_text(encoding="utf-8").splitlines()
    hits = (root / "test_hicl_top3.hits.jsonl").read_text().splitlines()
    assert len(lines) == len(hits) == 10
    for number, (line, hit_line) in enumerate(zip(lines, hits)):
        row = json.loads(line)  # one JSON object a line, as the reference readers parse it
        assert row["labels"] == str(number % 3) and row["text"] == test_split[number]
        assert set(row) == {"labels", "text", "text0", "text1", "text2"}
        retrieved = [row[f"text{i}"] for i in range(3)]
        assert all(text.startswith(tuple(TOPICS)) and "story" in text for text in retrieved)  # never the test split
        found = json.loads(hit_line)
        assert len(found["ids"]) == len(found["scores"]) == 3 and found["scores"] == sorted(found["scores"], reverse=True)


def test_every_augmented_example_keeps_its_input_record_id_whatever_lines_are_blank(database, tmp_path):
    root, test_split = database
    examples = tmp_path / "with_ids.jsonl"
    rows = [{"id": f"ex-{i}", "labels": i % 3, "text": text} for i, text in enumerate(test_split[:4])]
    examples.write_text("\n".join(["", json.dumps(rows[0]), "", "  ", *map(json.dumps, rows[1:]), ""]) + "\n")
    out = tmp_path / "with_ids_out.jsonl"
    assert main(["augment", str(root / "db"), "--input", str(examples), "--out", str(out), "--top", "2"]) == 0
    kept = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(row["id"], row["text"]) for row in kept] == [(row["id"], row["text"]) for row in rows]
    assert len((tmp_path / "with_ids_out.hits.jsonl").read_text().splitlines()) == len(rows)  # the same order


def test_the_query_itself_is_never_a_demonstration(database, tmp_path):
    root, test_split = database
    out = tmp_path / "all.jsonl"
    assert main(["augment", str(root / "db"), "--input", str(root / "test.jsonl"), "--out", str(out), "--top", "20",
                 "--strip-hashtags"]) == 0
    for line in out.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        shown = [row[f"text{i}"] for i in range(20)]
        assert all(shown) and not any(text.endswith(row["text"]) for text in shown)  # nor a re-tagged copy


def test_bad_examples_are_reported_with_their_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"labels": "0", "text": "fine"}) + "\n" + json.dumps({"text": "no label"}) + "\n")
    with pytest.raises(HiclError, match="line 2: missing 'labels'"):
        read_examples(path)
    path.write_text("{broken\n")
    with pytest.raises(HiclError, match="line 1: not JSON"):
        read_examples(path)
