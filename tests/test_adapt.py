"""The topic adapter: its split, its judge, and one way to encode for every reader of an adapted index."""

import json
import random

import numpy as np
import pytest
from helpers import Server, built_index, topical_rows, write_lines

from hicl_retrieval import BuildConfig, HiclError, Retriever, build_index
from hicl_retrieval.cli import main
from hicl_retrieval.core.config import AdaptConfig
from hicl_retrieval.core.errors import IndexDamaged
from hicl_retrieval.index.adapter import TopicAdapter
from hicl_retrieval.index.directory import IndexDir
from hicl_retrieval.learning.topic_adapter import AnchorBatches
from hicl_retrieval.workflows.adapt import adapt_index, record_adapter, remove_adapter, split_posts
from hicl_retrieval.workflows.evaluate import evaluate_retrieval
from hicl_retrieval.workflows.update import add_posts
from hicl_retrieval.workflows.verify import verify_index

QUERIES = ["river flooding downtown", "vote counting tonight", "new phone launch"]


def _adapter(dim: int, seed: int = 0, rank: int = 4) -> TopicAdapter:
    rng = np.random.default_rng(seed)
    return TopicAdapter(down=rng.normal(size=(dim, rank)).astype(np.float32),
                        up=rng.normal(size=(rank, dim)).astype(np.float32))


def _answers(results) -> list[list[tuple[str, float]]]:
    return [[(hit.post_id, round(hit.score, 5)) for hit in result.hits] for result in results]


def test_the_judge_s_and_validation_s_posts_are_never_drawn_for_training():
    rng = random.Random(0)
    tags = [[f"#t{rng.randrange(40)}"] + ([f"#t{rng.randrange(40)}"] if i % 3 == 0 else []) if i % 4 else []
            for i in range(3000)]
    split = split_posts(tags, AdaptConfig(held_out=400, validation=300, sample=1000))
    held, validation, anchors = set(split.held_out), set(split.validation), set(split.anchors)
    assert (len(held), len(validation), len(anchors)) == (400, 300, 1000)
    assert not (held & validation or held & anchors or validation & anchors)
    assert all(tags[post] for post in held | validation | anchors)
    batches = AnchorBatches(tags, split.anchors, held | validation, batch_size=64, seed=1)
    for _ in range(200):
        drawn_anchors, positives, shared, untagged = batches.batch()
        assert len(untagged) == 0
        assert not (set(drawn_anchors) | set(positives)) & (held | validation)
        assert set(drawn_anchors) <= anchors
        for row, (anchor, positive) in enumerate(zip(drawn_anchors, positives)):
            assert anchor != positive and set(tags[anchor]) & set(tags[positive])
            expected = [bool(set(tags[anchor]) & set(tags[other])) and column != row
                        for column, other in enumerate(positives)]
            assert shared[row].tolist() == expected
    with pytest.raises(HiclError, match="at least 500"):
        split_posts(tags[:600], AdaptConfig())


def test_an_adapter_is_applied_by_every_reader_kept_by_changes_and_removed(tmp_path, tiny_encoder, capsys):
    index = built_index(tmp_path, tiny_encoder)
    with Retriever(index, encoder=tiny_encoder) as plain:
        plain_answers = _answers(plain.search(QUERIES, k=5))
    adapter = _adapter(tiny_encoder.dim)
    name = record_adapter(index, adapter, {"before": 0.2, "after": 0.3, "noise": 0.01, "held_out": 100})
    manifest = IndexDir(index).read_manifest()
    assert manifest.adapter["file"] == name and manifest.adapter["rank"] == 4 and name in manifest.checksums

    def by_hand(retriever):
        vectors = adapter.apply(tiny_encoder.encode(QUERIES), normalize=True)
        return [[(hit.post_id, round(hit.score, 5)) for hit in hits]
                for hits in retriever.search_vectors(vectors, 5, queries=QUERIES)]

    with Retriever(index, encoder=tiny_encoder) as retriever:
        np.testing.assert_allclose(retriever.encode_queries(QUERIES),
                                   adapter.apply(tiny_encoder.encode(QUERIES), normalize=True), atol=1e-6)
        adapted_answers = _answers(retriever.search(QUERIES, k=5))
        assert adapted_answers == by_hand(retriever) and adapted_answers != plain_answers
        some = retriever.store.ids()[::3]
        within = retriever.search_vectors(retriever.encode_queries(QUERIES), 5, queries=QUERIES, among=some)
        assert all(len(hits) == 5 and {hit.id for hit in hits} <= set(some.tolist()) for hits in within)
        server = Server(_app(index, retriever))
        try:
            status, answer = server.call("POST", "/search", {"queries": QUERIES, "k": 5})
        finally:
            server.stop()
    assert status == 200
    assert [[(hit["post_id"], round(hit["score"], 5)) for hit in result["hits"]] for result in answer["results"]] \
        == adapted_answers

    (tmp_path / "queries.txt").write_text("\n".join(QUERIES) + "\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["query", str(index), "--file", str(tmp_path / "queries.txt"), "-k", "5", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [[(hit["post_id"], round(hit["score"], 5)) for hit in line["hits"]] for line in lines] == adapted_answers
    report = evaluate_retrieval([index], sample=5, max_share=0.5)
    assert "adapter rank 4" in report.rows[0].name
    assert main(["info", str(index)]) == 0 and "rank 4 residual map of the query vectors" in capsys.readouterr().out

    write_lines(tmp_path / "more.jsonl", topical_rows(20, text="{topic} later news {i} #topic{t}", first_id=5000))
    add_posts(index, [tmp_path / "more.jsonl"], encoder=tiny_encoder, progress=False)
    assert main(["delete", str(index), "--post-id", "5003"]) == 0
    assert main(["compact", str(index)]) == 0
    assert main(["reindex", str(index), "--index", "hnsw"]) == 0
    manifest = IndexDir(index).read_manifest()
    assert manifest.adapter["file"] == name and (index / name).exists()
    assert not verify_index(index).damaged
    with Retriever(index, encoder=tiny_encoder) as retriever:
        assert _answers(retriever.search(QUERIES, k=5)) == by_hand(retriever)

    capsys.readouterr()
    assert main(["adapt", str(index), "--remove"]) == 0
    assert "adapter removed" in capsys.readouterr().out
    assert not IndexDir(index).read_manifest().adapter and not (index / name).exists()
    with Retriever(index, encoder=tiny_encoder) as retriever:
        np.testing.assert_allclose(retriever.encode_queries(QUERIES), tiny_encoder.encode(QUERIES), atol=1e-6)
    assert remove_adapter(index) is False


def _has_matplotlib() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def _app(index, retriever):
    from hicl_retrieval.service.app import create_app

    return create_app(index, retriever=retriever)


def test_a_damaged_adapter_is_caught_by_verify_and_refused_by_readers_in_one_line(tmp_path, tiny_encoder, capsys):
    index = built_index(tmp_path, tiny_encoder)
    name = record_adapter(index, _adapter(tiny_encoder.dim), {})
    data = bytearray((index / name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (index / name).write_bytes(bytes(data))
    report = verify_index(index)
    assert [check.what for check in report.damaged] == [name, f"{name} contents"]
    assert "adapt" in report.advice() and "--remove" in report.advice()
    with pytest.raises(IndexDamaged, match=f"{name} is damaged.*verify"):
        Retriever(index, encoder=tiny_encoder)
    assert main(["query", str(index), "river"]) == 1
    error = capsys.readouterr().err
    assert "Traceback" not in error and error.splitlines()[-1].startswith("hicl-retrieval: error: ")
    assert f"{name} is damaged" in error and "verify" in error
    assert main(["adapt", str(index), "--remove"]) == 0
    assert not verify_index(index).damaged


@pytest.mark.parametrize("arrays", [
    {"down": np.array([{"code": 1}], dtype=object), "up": np.zeros((1, 32), np.float32)},  # would need pickle
    {"down": np.zeros((32, 4), np.float64), "up": np.zeros((4, 32), np.float64)},
    {"down": np.zeros((16, 4), np.float32), "up": np.zeros((4, 16), np.float32)},
    {"down": np.full((32, 4), np.nan, np.float32), "up": np.zeros((4, 32), np.float32)},
    {"weights": np.zeros((32, 32), np.float32)},
])
def test_a_file_that_is_not_an_adapter_is_refused(tmp_path, arrays):
    np.savez(tmp_path / "a.npz", **arrays)
    with pytest.raises(HiclError, match="not a topic adapter"):
        TopicAdapter.load(tmp_path / "a.npz", 32)
    (tmp_path / "b.npz").write_bytes(b"import os; os.system('x')")
    with pytest.raises(HiclError, match="not a topic adapter"):
        TopicAdapter.load(tmp_path / "b.npz", 32)


def test_an_adapter_is_not_applied_where_hashtags_say_nothing(tmp_path, tiny_encoder, capsys):
    """Hashtags drawn at random, whatever the text: nothing to learn, so the index is left as it was."""
    rng = random.Random(0)
    words = ["river", "flood", "fire", "rain", "game", "music", "vote", "phone", "smoke", "final", "debate", "road"]
    rows = [{"id": str(i), "text": " ".join(rng.sample(words, 4)) + f" {i} #tag{rng.randrange(60)}"}
            for i in range(1500)]
    write_lines(tmp_path / "posts.jsonl", rows)
    build_index([tmp_path / "posts.jsonl"], tmp_path / "index", BuildConfig(encoder=tiny_encoder.config,
                                                                              progress=False), encoder=tiny_encoder)
    index = tmp_path / "index"
    before = (index / "manifest.json").read_bytes()
    with Retriever(index, encoder=tiny_encoder) as retriever:
        answers = _answers(retriever.search(QUERIES, k=5))
    config = AdaptConfig(steps=400, check_every=50, held_out=300, validation=300, sample=900, max_share=0.05,
                         progress=False)
    report = adapt_index(index, config)
    assert not report.applied and report.file == ""
    assert report.held_out == 300 and report.validation == 300 and report.anchors > 0
    assert "the index is unchanged" in report.reason
    assert (index / "manifest.json").read_bytes() == before
    assert not list(index.glob("adapter-*"))
    with Retriever(index, encoder=tiny_encoder) as retriever:
        assert _answers(retriever.search(QUERIES, k=5)) == answers
    assert main(["adapt", str(index), "--steps", "100", "--check-every", "50", "--held-out", "300",
                 "--validation", "300", "--sample", "900", "--max-share", "0.05", "--quiet", "--json"]
                + (["--plot", str(tmp_path / "adapt.png")] if _has_matplotlib() else [])) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["applied"] is False and printed["held_out"] == 300 and "before" in printed and "after" in printed
    assert len(printed["curve_before"]) == 10 and printed["curve_before"][-1] == printed["before"]
    if _has_matplotlib():
        numbers = json.loads((tmp_path / "adapt.json").read_text())
        assert numbers["series"] == {"plain encoder": printed["curve_before"], "adapter rank 64": printed["curve_after"]}
        assert "300 posts never trained on" in numbers["title"] and (tmp_path / "adapt.png").stat().st_size > 1000
    assert main(["adapt", str(index), "--rank", "0"]) == 1
    assert "--rank" in capsys.readouterr().err


@pytest.mark.slow
def test_adapt_on_real_tweets_gains_on_held_out_posts_and_every_search_uses_it(tmp_path, shared_data, minilm_encoder):
    """MiniLM over seven CrisisLexT26 events: their hashtags teach it which event a post is about.

    With untagged negatives the map also ranks tagged posts first, which the report's composition shows."""
    folder = shared_data / "crisislex-t26" / "data" / "CrisisLexT26"
    events = sorted(path.name for path in folder.iterdir() if path.is_dir())[::4]
    files = [folder / event / f"{event}-tweets_labeled.csv" for event in events]
    build_index(files, tmp_path / "index", BuildConfig(encoder=minilm_encoder.config, progress=False),
                encoder=minilm_encoder)
    report = adapt_index(tmp_path / "index", AdaptConfig(untagged_negatives=256, progress=False))
    print(report.summary())
    assert report.applied and report.after > report.before + report.noise
    assert report.tagged_after > report.tagged_before
    assert report.held_out == report.validation >= 100 and report.anchors > 500
    record = IndexDir(tmp_path / "index").read_manifest().adapter
    assert record["file"] == report.file and record["after"] == report.after
    adapter = TopicAdapter.load(tmp_path / "index" / report.file, minilm_encoder.dim)
    with Retriever(tmp_path / "index", encoder=minilm_encoder) as retriever:
        queries = ["evacuation centres are open for families", "the death toll rises"]
        expected = retriever.search_vectors(adapter.apply(minilm_encoder.encode(queries), normalize=True), 10,
                                            queries=queries)
        assert _answers(retriever.search(queries, k=10)) == [[(h.post_id, round(h.score, 5)) for h in hits]
                                                             for hits in expected]


def test_adapt_reads_only_the_texts_it_encodes_and_draws_untagged_negatives_among_all_other_posts(
        tmp_path, tiny_encoder, monkeypatch):
    """An index of tens of millions of posts: adapt must not hold every text, and posts without an eligible
    hashtag (none at all, or one too rare to count) are the untagged negatives, drawn by id."""
    from hicl_retrieval.index.store import PostStore

    rng = random.Random(1)
    words = ["river", "flood", "fire", "rain", "game", "music", "vote", "phone", "smoke", "final", "debate", "road"]
    rows = [{"id": f"p{i}", "text": " ".join(rng.sample(words, 4)) + f" {i}"
             + ("" if i % 3 == 0 else f" #tag{rng.randrange(40)}") + (" #once" if i == 3 else "")} for i in range(1500)]
    write_lines(tmp_path / "posts.jsonl", rows)
    index = tmp_path / "index"
    build_index([tmp_path / "posts.jsonl"], index, BuildConfig(encoder=tiny_encoder.config, progress=False),
                encoder=tiny_encoder)
    with Retriever(index, encoder=tiny_encoder) as retriever:
        no_tag = set(retriever.store.ids_of_post_ids([f"p{i}" for i in range(0, 1500, 3)]).tolist())
        tagged = set(retriever.store.ids_of_post_ids([f"p{i}" for i in range(1500) if i % 3]).tolist())
    assert len(no_tag) == 500 and len(tagged) == 1000

    monkeypatch.setattr(PostStore, "posts_text", lambda self: pytest.fail("adapt read every post's text"))
    requested, drawn = [], []
    texts, batch = PostStore.texts, AnchorBatches.batch
    monkeypatch.setattr(PostStore, "texts", lambda self, ids: requested.append(list(ids)) or texts(self, ids))

    def recorded(self):
        out = batch(self)
        drawn.extend(out[3].tolist())
        return out

    monkeypatch.setattr(AnchorBatches, "batch", recorded)
    report = adapt_index(index, AdaptConfig(untagged_negatives=8, held_out=100, validation=100, sample=300, steps=20,
                                            check_every=10, max_share=0.5, progress=False))
    assert report.posts == 1500 and report.eligible == 1000 and report.held_out == 100
    [asked] = requested
    assert len(asked) == len(set(asked)) == 500 and set(asked) <= tagged
    assert len(drawn) == 20 * 8 and set(drawn) <= no_tag  # p3 is among them: "#once" is too rare to count
    assert len(set(drawn) & no_tag) > 50
