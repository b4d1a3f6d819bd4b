"""eval-retrieval on a hand-made corpus whose scores can be worked out by hand."""

import json

import pytest
from helpers import drawn_png

from hicl_retrieval import HiclError
from hicl_retrieval.cli import main
from hicl_retrieval.core.config import BuildConfig
from hicl_retrieval.encoding.bm25 import Bm25
from hicl_retrieval.workflows.build import build_index
from hicl_retrieval.workflows.evaluate import evaluate_retrieval, read_queries

FRUIT = "apples oranges bananas #fruit"
BAKING = "chocolate cake recipe #baking"
POSTS = [
    FRUIT,
    "apples oranges bananas today #fruit",
    "RT @grocer: apples oranges bananas #fruit",  # a copy of FRUIT: never a neighbour of it
    "bananas split dessert #dessert",
    BAKING,
    "chocolate cake party #party",
    "oven temperature tips #baking",
    "stock market rally #finance",
    "stock market crash #finance",
]


@pytest.fixture(scope="module")
def indexes(tmp_path_factory, tiny_encoder):
    root = tmp_path_factory.mktemp("evaluation")
    (root / "posts.txt").write_text("\n".join(POSTS) + "\n", encoding="utf-8")
    (root / "other.txt").write_text("\n".join(POSTS[:-1]) + "\n", encoding="utf-8")
    config = BuildConfig(encoder=tiny_encoder.config, progress=False)
    for name, corpus in (("a", "posts.txt"), ("b", "posts.txt"), ("other", "other.txt")):
        build_index([root / corpus], root / name, config, encoder=tiny_encoder)
    return root


def test_scores_exclude_the_query_and_its_copies(indexes):
    report = evaluate_retrieval([indexes / "a", indexes / "b"], queries=[FRUIT, BAKING, "no hashtag here"],
                                bm25=True, max_share=0.5)
    assert (report.posts, report.queries, report.skipped) == (9, 2, 1)
    assert report.tags == 3  # fruit, baking, finance; party and dessert appear once
    bm25, first, second = report.rows
    # BM25, query tags stripped: FRUIT finds "... today #fruit" first (itself and its retweet are
    # left out), then the dessert post; BAKING finds only the party post once it is left out itself.
    assert bm25.name == "bm25"
    assert (bm25.scores.hit_at_1, bm25.scores.hit_at_k, bm25.scores.mrr) == (0.5, 0.5, 0.5)
    assert bm25.scores.precision_at_k == pytest.approx(0.05)
    # An encoder ranks every other post; each query has exactly one tag-mate besides its copies.
    assert first.name.startswith("a (") and second.name.startswith("b (")
    for row in (first, second):
        assert row.scores.hit_at_k == 1.0
        assert row.scores.precision_at_k == pytest.approx(0.1)
    assert first.scores == second.scores
    assert "bm25" in report.table() and "hit@10" in report.table()


def test_sampled_queries_and_errors(indexes):
    report = evaluate_retrieval([indexes / "a"], sample=4, max_share=0.5, seed=3)
    assert report.queries == 4 and report.skipped == 0
    with pytest.raises(HiclError, match="different posts"):
        evaluate_retrieval([indexes / "a", indexes / "other"], sample=2, max_share=0.5)
    with pytest.raises(HiclError, match="sample at most"):
        evaluate_retrieval([indexes / "a"], sample=50, max_share=0.5)
    with pytest.raises(HiclError, match="nothing to score"):
        evaluate_retrieval([indexes / "a"], queries=["no tags"], max_share=0.5)


def test_query_files(tmp_path):
    (tmp_path / "q.jsonl").write_text(json.dumps({"text": FRUIT, "hashtags": ["#fruit"]}) + "\n\n")
    (tmp_path / "q.txt").write_text(f"{FRUIT}\n{BAKING}\n")
    (tmp_path / "bad.jsonl").write_text(json.dumps({"text": FRUIT}) + "\n[1, 2]\n")
    assert read_queries(tmp_path / "q.jsonl") == [FRUIT]
    assert read_queries(tmp_path / "q.txt") == [FRUIT, BAKING]
    with pytest.raises(HiclError, match="line 2"):
        read_queries(tmp_path / "bad.jsonl")


def test_bm25_ranks_by_shared_terms():
    lexical = Bm25(["river flood warning", "flood", "music festival", "river"], ids=[10, 11, 12, 13])
    found = lexical.search(["river flood", "election"], k=4)
    assert [post for _, post in found[0]][0] == 10 and {post for _, post in found[0]} == {10, 11, 13}
    assert found[1] == []  # no shared term: nothing returned


def test_command_line(indexes, tmp_path, capsys):
    queries = tmp_path / "held_out.jsonl"
    queries.write_text("\n".join(json.dumps({"text": q}) for q in (FRUIT, BAKING)) + "\n")
    code = main(["eval-retrieval", str(indexes / "a"), "--queries", str(queries), "--bm25", "--max-share", "0.5",
                 "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert [row["retriever"] for row in report["rows"]][0] == "bm25" and report["queries"] == 2
    assert report["rows"][1]["hit@10"] == 1.0


def test_a_plot_of_hit_at_k_per_retriever_with_its_numbers_beside(indexes, tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="install the plot extra: pip install 'hicl-retrieval[plot]'")
    png = tmp_path / "curves.png"
    assert main(["eval-retrieval", str(indexes / "a"), str(indexes / "b"), "--sample", "4", "--max-share", "0.5",
                 "--bm25", "-k", "5", "--plot", str(png)]) == 0
    assert f"plot in {png}" in capsys.readouterr().out
    assert drawn_png(png) == (750, 480)
    numbers = json.loads(png.with_suffix(".json").read_text())
    assert numbers["x"] == [1, 2, 3, 4, 5] and numbers["queries"] == 4 and "4 queries" in numbers["title"]
    assert list(numbers["series"]) == ["bm25", "a (hashencoder)", "b (hashencoder)"]
    report = evaluate_retrieval([indexes / "a"], sample=4, max_share=0.5, k=5)
    curve = numbers["series"]["a (hashencoder)"]
    assert curve == list(report.rows[0].curve) and curve[-1] == report.rows[0].scores.hit_at_k
    assert curve[0] == report.rows[0].scores.hit_at_1 and curve == sorted(curve)


def test_plot_needs_a_png_and_says_which_extra_to_install(indexes, tmp_path, capsys, monkeypatch):
    arguments = ["eval-retrieval", str(indexes / "a"), "--sample", "2", "--max-share", "0.5"]
    assert main([*arguments, "--plot", str(tmp_path / "curves.svg")]) == 1
    assert "name a .png file" in capsys.readouterr().err
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)
    assert main([*arguments, "--plot", str(tmp_path / "curves.png")]) == 1
    assert "pip install 'hicl-retrieval[plot]'" in capsys.readouterr().err
    assert not (tmp_path / "curves.png").exists()
