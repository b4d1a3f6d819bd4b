"""Filtered search: conditions as data, parameterised SQL, k hits whenever k posts match."""

import json
from datetime import datetime

import numpy as np
import pytest
from helpers import TOPICS, write_posts

from hicl_retrieval import (
    BuildConfig,
    Condition,
    Filter,
    HiclError,
    Retriever,
    build_index,
)
from hicl_retrieval.cli import main
from hicl_retrieval.core.text import extract_hashtags
from hicl_retrieval.index.directory import IndexDir
from hicl_retrieval.index.filters import from_options
from hicl_retrieval.index.manifest import MANIFEST, Manifest


@pytest.fixture(scope="module")
def indexes(tmp_path_factory, tiny_encoder):
    root = tmp_path_factory.mktemp("filters")
    rows = write_posts(root / "a.jsonl", 1500)
    (root / "b.jsonl").write_text(json.dumps({"id": "b1", "text": "wildfire smoke from file b", "author": "zed"}) + "\n")
    built = {}
    for factory in ("Flat", "HNSW8"):
        config = BuildConfig(encoder=tiny_encoder.config, progress=False, faiss_factory=factory)
        build_index([root / "a.jsonl", root / "b.jsonl"], root / factory, config, encoder=tiny_encoder)
        built[factory] = root / factory
    return built, rows, root


def matches(row, tag=None, authors=None, since=None):
    created = datetime.fromisoformat(row["created_at"].replace("Z", ""))
    return ((tag is None or tag in extract_hashtags(row["text"]))
            and (authors is None or row["author"] in authors)
            and (since is None or created >= since))


@pytest.mark.parametrize("factory", ["Flat", "HNSW8"])
def test_filtered_hits_meet_every_condition_and_fill_k(indexes, tiny_encoder, factory):
    built, rows, _ = indexes
    where = from_options(has_hashtags=["topic2"], authors=["user3", "@user4"], since="2024-05-10")
    expected = {r["id"] for r in rows if matches(r, "#topic2", {"user3", "user4"}, datetime(2024, 5, 10))}
    with Retriever(built[factory], encoder=tiny_encoder) as retriever:
        hits = retriever.search("football final", k=10, filter=where, dedupe=False)[0].hits
        assert len(hits) == 10
        assert {h.post_id for h in hits} <= expected
        every = retriever.search("football final", k=1000, filter=where, dedupe=False)[0].hits
        assert {h.post_id for h in every} == expected  # all of them, even from an approximate index
        rare = retriever.search("phone launch", k=20, filter=Filter.of(Condition("hashtag", "has", "#RARE")))[0].hits
        assert sorted(h.post_id for h in rare) == sorted(r["id"] for r in rows if "#rare" in r["text"])
        assert retriever.search("x", k=5, filter=from_options(has_hashtags=["nosuchtag"]))[0].hits == []


def test_approximate_filtered_search_equals_exact_filtered_search(indexes, tiny_encoder):
    built, _, _ = indexes
    where = from_options(lacks_hashtags=["topic0"], exclude_authors=["user1"], until="2024-05-20")
    queries = ["river flooding", "new phone", "debate tonight", "smoke on the ridge"]
    with Retriever(built["Flat"], encoder=tiny_encoder) as flat, Retriever(built["HNSW8"], encoder=tiny_encoder) as hnsw:
        assert flat.vectors.is_exact and not hnsw.vectors.is_exact
        for a, b in zip(flat.search(queries, k=10, filter=where), hnsw.search(queries, k=10, filter=where)):
            assert [h.id for h in a.hits] == [h.id for h in b.hits]
            np.testing.assert_allclose([h.score for h in a.hits], [h.score for h in b.hits], atol=1e-5)


def test_source_filter_by_file_name_or_path(indexes, tiny_encoder):
    built, _, root = indexes
    with Retriever(built["Flat"], encoder=tiny_encoder) as retriever:
        only_b = retriever.search("smoke", k=5, filter=from_options(sources=["b.jsonl"]))[0].hits
        assert [h.post_id for h in only_b] == ["b1"]
        by_path = retriever.search("smoke", k=5, filter=from_options(sources=[str(root / "b.jsonl")]))[0].hits
        assert [h.post_id for h in by_path] == ["b1"]
        not_b = retriever.search("smoke", k=50, filter=from_options(exclude_sources=["b.jsonl"]))[0].hits
        assert len(not_b) == 50 and "b1" not in {h.post_id for h in not_b}


def test_user_values_never_become_sql(indexes, tiny_encoder):
    built, _, _ = indexes
    hostile = "x') OR TRUE; DROP TABLE posts; --"
    with Retriever(built["Flat"], encoder=tiny_encoder) as retriever:
        for where in (from_options(authors=[hostile]), from_options(has_hashtags=[hostile.replace(" ", "")]),
                      from_options(sources=[hostile])):
            assert retriever.search("anything", k=5, filter=where)[0].hits == []
        assert retriever.store.count() == 1501


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("hashtag", "near", "#x"), "unknown filter"),
        (("hashtag", "has", "#"), "needs a tag"),
        (("author", "in", []), "one or more names"),
        (("created_at", ">=", "2024-01-01"), "needs a datetime"),
    ],
)
def test_bad_conditions_are_refused(args, message):
    with pytest.raises(HiclError, match=message):
        Condition(*args)
    with pytest.raises(HiclError, match="not a date"):
        from_options(since="last tuesday")


def test_cli_filters(indexes, capsys):
    built, _, _ = indexes
    code = main(["query", str(built["Flat"]), "football", "-k", "4", "--json", "--has-hashtag", "#topic1",
                 "--exclude-author", "user2", "--since", "2024-05-03", "--until", "2024-05-09T00:00:00Z"])
    assert code == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert len(hits) == 4
    for hit in hits:
        assert "#topic1" in hit["hashtags"] and hit["author"] != "user2"
        assert "2024-05-03" <= hit["created_at"] < "2024-05-09"


def test_1_a_source_is_matched_however_its_path_is_spelled(tmp_path, tiny_encoder, monkeypatch):
    """An index built with relative paths, filtered by absolute, ./ and bare names (augment's leak)."""
    split = tmp_path / "split"
    split.mkdir()
    (split / "train.jsonl").write_text("".join(json.dumps({"text": f"{TOPICS[i % 5]} train {i}"}) + "\n"
                                               for i in range(30)), encoding="utf-8")
    (split / "test.jsonl").write_text("".join(json.dumps({"text": f"{TOPICS[i % 5]} test {i}"}) + "\n"
                                              for i in range(10)), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    build_index(["split/train.jsonl", "./split/test.jsonl"], "idx",
                BuildConfig(encoder=tiny_encoder.config, progress=False), encoder=tiny_encoder)
    spellings = [str(split / "test.jsonl"), "./split/test.jsonl", "split/test.jsonl", "test.jsonl",
                 "split/../split/test.jsonl"]
    with Retriever("idx", encoder=tiny_encoder) as retriever:
        assert {h.source for h in retriever.search("train", k=40)[0].hits} == {
            str(split / "train.jsonl"), str(split / "test.jsonl")}  # stored resolved
        for spelling in spellings:
            kept = retriever.search("test", k=40, filter=from_options(exclude_sources=[spelling]))[0].hits
            assert len(kept) == 30 and all("train" in h.text for h in kept), spelling
            only = retriever.search("test", k=40, filter=from_options(sources=[spelling]))[0].hits
            assert len(only) == 10 and all("test" in h.text for h in only), spelling
    monkeypatch.chdir(split)  # a bare name never depends on where the query runs
    with Retriever(tmp_path / "idx", encoder=tiny_encoder) as retriever:
        assert len(retriever.search("x", k=40, filter=from_options(sources=["test.jsonl"]))[0].hits) == 10


def test_1_indexes_that_stored_relative_sources_still_match_absolute_paths(tmp_path):
    import duckdb

    con = duckdb.connect()
    con.execute("CREATE TABLE posts (source VARCHAR)")
    con.execute("INSERT INTO posts VALUES ('split/test.jsonl'), ('split/train.jsonl'), ('/elsewhere/test.jsonl')")
    where, params = from_options(exclude_sources=[str(tmp_path / "split" / "test.jsonl")]).to_sql()
    kept = sorted(row[0] for row in con.execute(f"SELECT source FROM posts WHERE {where}", params).fetchall())
    assert kept == ["/elsewhere/test.jsonl", "split/train.jsonl"]


@pytest.mark.parametrize(
    ("value", "moment"),
    [
        ("20141023", datetime(2014, 10, 23)),
        ("2015", datetime(2015, 1, 1)),
        ("201410", datetime(2014, 10, 1)),
        ("2014-10", datetime(2014, 10, 1)),
        ("2014-10-23", datetime(2014, 10, 23)),
        ("2014-10-23T02:00:00+02:00", datetime(2014, 10, 23)),
        ("@1414022400", datetime(2014, 10, 23)),
    ],
)
def test_4_filter_times_read_digits_as_dates_and_unix_seconds_only_with_an_at(value, moment):
    (condition,) = from_options(since=value).conditions
    assert condition.value == moment


def test_4_ambiguous_digits_are_refused_with_the_way_to_write_them():
    with pytest.raises(HiclError, match="@1414022400"):
        from_options(until="1414022400")


def test_24_authors_match_whatever_their_case_and_at_sign(tmp_path, tiny_encoder):
    corpus = tmp_path / "news.jsonl"
    corpus.write_text("".join(json.dumps({"text": f"{TOPICS[i % 5]} bulletin {i}", "author": name}) + "\n"
                              for i, name in enumerate(["BBCBreaking", "@BBCBreaking", "bbcbreaking", "cnn"])))
    build_index([corpus], tmp_path / "idx", BuildConfig(encoder=tiny_encoder.config, progress=False),
                encoder=tiny_encoder)
    with Retriever(tmp_path / "idx", encoder=tiny_encoder) as retriever:
        for name in ("bbcbreaking", "@BBCBREAKING", " BBCBreaking "):
            hits = retriever.search("bulletin", k=10, filter=from_options(authors=[name]))[0].hits
            assert sorted(h.author for h in hits) == ["@BBCBreaking", "BBCBreaking", "bbcbreaking"], name
        others = retriever.search("bulletin", k=10, filter=from_options(exclude_authors=["BBCBREAKING"]))[0].hits
        assert [h.author for h in others] == ["cnn"]


@pytest.mark.parametrize("rule", ["twitter", "hicl"])
def test_23_the_index_records_its_hashtag_rule_and_filters_and_strips_by_it(tmp_path, tiny_encoder, capsys, rule):
    corpus = tmp_path / "tags.jsonl"
    tagged = [json.dumps({"text": f"{TOPICS[i % 5]} note {i} #Covid_19 #東京"}) for i in range(5)]
    other = [json.dumps({"text": f"{TOPICS[i % 5]} other {i}"}) for i in range(5)]
    corpus.write_text("\n".join(tagged + other) + "\n")
    index = tmp_path / rule
    build_index([corpus], index, BuildConfig(encoder=tiny_encoder.config, progress=False, hashtag_rule=rule),
                encoder=tiny_encoder)
    with Retriever(index, encoder=tiny_encoder) as retriever:
        assert retriever.manifest.hashtag_rule == rule
        tagged = retriever.search("note", k=10, filter=from_options(has_hashtags=["Covid_19"]))[0].hits
        tokyo = retriever.search("note", k=10, filter=from_options(has_hashtags=["#東京"]))[0].hits
        assert (len(tagged), len(tokyo)) == ((5, 5) if rule == "twitter" else (0, 0))
    assert main(["info", str(index)]) == 0
    assert f"hashtags    {rule} rule" in capsys.readouterr().out


def test_23_an_index_built_before_the_rule_was_recorded_keeps_the_hicl_rule(indexes):
    built, _, _ = indexes
    data = json.loads((built["Flat"] / MANIFEST).read_text())
    data.pop("hashtag_rule")
    assert Manifest.from_dict(data).hashtag_rule == "hicl"
    assert IndexDir(built["Flat"]).read_manifest().hashtag_rule == "twitter"
