"""The search service on a real uvicorn server on loopback: every endpoint, bad requests, the token."""

import json
import re
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from helpers import Server, built_index, free_port, write_corpus

from hicl_retrieval import BuildConfig, Retriever, build_index
from hicl_retrieval.cli import main

uvicorn = pytest.importorskip("uvicorn", reason="install the [serve] extra: pip install 'hicl-retrieval[serve]'")
from hicl_retrieval.service.app import create_app  # noqa: E402
from hicl_retrieval.service.config import ServiceConfig  # noqa: E402

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_encoder):
    root = tmp_path_factory.mktemp("served")
    built_index(root, tiny_encoder)
    retriever = Retriever(root / "index", encoder=tiny_encoder)
    server = Server(create_app(root / "index", retriever=retriever,
                               config=ServiceConfig(max_k=50, max_hits=500, max_body_bytes=4096, token=TOKEN)),
                    token=TOKEN)
    yield server, retriever
    server.stop()
    retriever.close()


def test_search_answers_like_the_library(served):
    server, retriever = served
    status, answer = server.call("POST", "/search", {"queries": ["river flooding downtown", "vote counting"], "k": 3})
    assert status == 200 and len(answer["results"]) == 2
    expected = [result.to_dict() for result in retriever.search(["river flooding downtown", "vote counting"], k=3)]
    assert answer["results"] == json.loads(json.dumps(expected))
    status, one = server.call("POST", "/search", {"queries": "river flooding downtown", "k": 2, "dedupe": False})
    assert status == 200 and len(one["results"]) == 1 and len(one["results"][0]["hits"]) == 2


def test_filters_are_data_as_the_library_s_conditions(served):
    server, _ = served
    status, answer = server.call("POST", "/search", {"queries": "update", "k": 5, "filter": [
        {"field": "hashtag", "op": "has", "value": "#topic2"},
        {"field": "created_at", "op": ">=", "value": "2024-05-03"},
        {"field": "author", "op": "not_in", "value": ["user1"]}]})
    assert status == 200
    hits = answer["results"][0]["hits"]
    assert hits and all("#topic2" in hit["hashtags"] and hit["author"] != "user1" for hit in hits)
    assert all(hit["created_at"] >= "2024-05-03" for hit in hits)


def test_posts_info_health_and_the_openapi_page(served):
    server, retriever = served
    status, post = server.call("GET", "/posts/1002")
    assert status == 200 and post["post_id"] == "1002" and "update number 2" in post["text"]
    assert server.call("GET", "/posts/no-such-post")[0] == 404
    status, info = server.call("GET", "/info")
    assert status == 200 and info["posts"] == retriever.manifest.count and info["encoder"]["dtype"] == "float32"
    assert server.call("GET", "/health", token=None) == (200, {"status": "ok", "posts": retriever.manifest.count,
                                                           "token_required": True})
    status, spec = server.call("GET", "/openapi.json")
    assert status == 200 and {"/search", "/posts/{post_id}", "/info", "/health"} <= set(spec["paths"])
    docs = urllib.request.Request(f"http://127.0.0.1:{server.port}/docs", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(docs, timeout=10) as page:
        assert page.status == 200 and b"swagger" in page.read().lower()


def test_the_token_is_required_and_checked_before_anything_else(served):
    server, _ = served
    for token in (None, "wrong", TOKEN + "x", "s3cret-tokën"):
        status, answer = server.call("POST", "/search", {"queries": "river"}, token=token)
        assert status == 401 and "bearer token" in answer["error"]
    for method, path in (("GET", "/info"), ("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/posts/1002"),
                         ("POST", "/add"), ("GET", "/no-such-path")):
        assert server.call(method, path, token=None)[0] == 401, path
    # a malformed or oversized body without the token learns only that the token is missing
    assert server.call("POST", "/search", raw=b"{not json", token=None)[0] == 401
    assert server.call("POST", "/search", raw=b"x" * 100_000, token=None)[0] == 401
    assert server.call("GET", "/health", token=None)[0] == 200


@pytest.mark.parametrize("body, status, message", [
    (b"{not json", 422, "JSON"),
    ({"queries": 5}, 422, "queries"),
    ({"queries": "river", "k": "ten"}, 422, "k"),
    ({"queries": "river", "k": 0}, 400, "k must be between 1 and 50, not 0"),
    ({"queries": "river", "k": 51}, 400, "k must be between 1 and 50, not 51"),
    ({"queries": "river", "filter": [{"field": "colour", "op": "is", "value": "red"}]}, 400, "unknown filter 'colour is'"),
    ({"queries": "river", "filter": [{"field": "hashtag", "op": "near", "value": "#a"}]}, 400, "unknown filter"),
    ({"queries": "river", "filter": [{"field": "created_at", "op": ">=", "value": "last tuesday"}]}, 400, "last tuesday"),
    ({"queries": ""}, 400, "the query is empty"),
    ({"queries": []}, 400, "give at least one post"),
    ({"queries": "river", "colour": "red"}, 422, "colour"),
    ({"queries": "x" * 100_000}, 413, "over 4096 bytes"),
    ({"queries": ["river"] * 300}, 400, "queries: at most 256 a request, not 300"),
    ({"queries": ["river"] * 11, "k": 50}, 400, "11 queries x k=50 ask for 550 hits; at most 500 a request"),
    ({"queries": "river", "k": True}, 422, "k: Input should be a valid integer"),
    ({"queries": "river", "k": "3"}, 422, "k: Input should be a valid integer"),
    ({"queries": "river", "k": 2.0}, 422, "k: Input should be a valid integer"),
    ({"queries": "river", "dedupe": "no"}, 422, "dedupe: Input should be a valid boolean"),
    ({"queries": "river", "strip_hashtags": 1}, 422, "strip_hashtags: Input should be a valid boolean"),
    ({"queries": ["river", 5]}, 422, "queries"),
    ({"queries": "river", "filter": [{"field": "author", "op": "in", "value": 5}]}, 422, "filter[0].value"),
    (b'{"queries": "\\ud800 x"}', 400, "the query is not valid UTF-8 (it holds the lone surrogate \\ud800)"),
    (b'{"queries": ["river", "\\udcff"]}', 400, "the query (query 2 of 2) is not valid UTF-8"),
    (b'{"queries": "river", "filter": [{"field": "author", "op": "in", "value": ["\\ud800"]}]}', 400,
     "the author filter's name '\\ud800' is not valid UTF-8"),
    (b'{"queries": "river", "filter": [{"field": "hashtag", "op": "has", "value": "#a\\ud800"}]}', 400,
     "the hashtag filter's tag is not valid UTF-8"),
    (b'{"queries": "river", "filter": [{"field": "created_at", "op": ">=", "value": "2024\\ud800"}]}', 400,
     "the created_at filter's time is not valid UTF-8"),
    ({"queries": "\u200b\u2060"}, 400, "the query shows nothing (only invisible characters)"),
], ids=["malformed", "queries-type", "k-type", "k0", "k-over", "field", "op", "time", "empty", "none", "extra",
        "huge-query", "many", "hits", "k-true", "k-text", "k-float", "dedupe-text", "strip-number", "query-number",
        "filter-number", "surrogate", "surrogate-second", "surrogate-author", "surrogate-tag", "surrogate-time",
        "invisible"])
def test_bad_requests_get_a_4xx_json_error_naming_the_problem(served, body, status, message):
    server, _ = served
    raw = body if isinstance(body, bytes) else None
    got, answer = server.call("POST", "/search", None if raw else body, raw=raw)
    assert got == status and message in answer["error"], answer


def test_a_long_query_under_the_body_limit_is_refused_by_its_length(tmp_path, tiny_encoder, served):
    _, retriever = served
    server = Server(create_app(retriever.directory.path, retriever=retriever,
                               config=ServiceConfig(max_query_chars=1000)))
    try:
        status, answer = server.call("POST", "/search", {"queries": "flood " * 1000}, token=None)
        assert status == 400 and "query 1 has 6000 characters; at most 1000" in answer["error"]
        assert server.call("POST", "/search", {"queries": "flood " * 100}, token=None)[0] == 200
    finally:
        server.stop()


def test_serve_refuses_bad_settings_in_one_line(tmp_path, capsys):
    (tmp_path / "empty-token").write_text("\n")
    for args, message in ((["--port", "70000"], "--port must be between 1 and 65535"),
                          (["--token-file", str(tmp_path / "empty-token")], "is empty"),
                          (["--token-file", str(tmp_path / "missing")], "cannot be read")):
        assert main(["serve", str(tmp_path / "index"), *args]) == 1
        error = capsys.readouterr().err.strip()
        assert len(error.splitlines()) == 1 and message in error, error


def test_the_serve_command_answers_over_http_until_stopped(served, tmp_path):
    import subprocess
    import sys

    _, retriever = served
    (tmp_path / "token").write_text(TOKEN + "\n")
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "hicl_retrieval.cli", "serve", str(retriever.directory.path),
                                "--port", str(port), "--token-file", str(tmp_path / "token"), "--threads", "1"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while True:
            assert process.poll() is None, process.stderr.read()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
                    assert json.loads(answer.read())["status"] == "ok"
                break
            except OSError:
                assert time.time() < deadline, "serve did not start"
                time.sleep(0.2)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/search", method="POST",
                                         data=json.dumps({"queries": "river flooding", "k": 2}).encode(),
                                         headers={"Content-Type": "application/json",
                                                  "Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert len(json.loads(answer.read())["results"][0]["hits"]) == 2
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_service_follows_adds_deletes_and_compactions_of_another_process(tmp_path, tiny_encoder,
                                                                            tiny_hashencoder):
    import subprocess
    import sys

    write_corpus(tmp_path / "posts.jsonl")
    build_index([tmp_path / "posts.jsonl"], tmp_path / "index", BuildConfig(encoder=tiny_encoder.config,
                                                                             progress=False), encoder=tiny_encoder)
    (tmp_path / "more.jsonl").write_text("".join(
        json.dumps({"id": f"new{i}", "text": f"volcano eruption ash cloud number {i} #volcano"}) + "\n"
        for i in range(5)), encoding="utf-8")
    server = Server(create_app(tmp_path / "index", retriever=Retriever(tmp_path / "index", encoder=tiny_encoder)))

    def cli(*args: str) -> None:
        subprocess.run([sys.executable, "-m", "hicl_retrieval.cli", *args], check=True, capture_output=True)

    def volcano_hits() -> list[str]:
        status, answer = server.call("POST", "/search", {"queries": "volcano eruption ash cloud", "k": 5, "filter": [
            {"field": "hashtag", "op": "has", "value": "#volcano"}], "dedupe": False}, token=None)
        assert status == 200, answer
        return sorted(hit["post_id"] for hit in answer["results"][0]["hits"])

    try:
        before = server.call("GET", "/info", token=None)[1]["posts"]
        assert volcano_hits() == []
        cli("add", str(tmp_path / "index"), str(tmp_path / "more.jsonl"), "--quiet", "--threads", "1")
        assert server.call("GET", "/info", token=None)[1]["posts"] == before + 5
        assert volcano_hits() == [f"new{i}" for i in range(5)]
        cli("delete", str(tmp_path / "index"), "--post-id", "new0", "--post-id", "new1")
        assert volcano_hits() == ["new2", "new3", "new4"]
        assert server.call("GET", "/posts/new0", token=None)[0] == 404
        cli("compact", str(tmp_path / "index"))
        assert volcano_hits() == ["new2", "new3", "new4"]
        info = server.call("GET", "/info", token=None)[1]
        assert (info["posts"], info["segments"], info["deleted"]) == (before + 3, 1, 0)
    finally:
        server.stop()


@pytest.mark.parametrize("max_batch", [64, 1], ids=["batched", "one-by-one"])
def test_concurrent_searches_are_encoded_together_and_each_gets_its_own_answer(served, max_batch):
    from concurrent.futures import ThreadPoolExecutor

    _, retriever = served
    app = create_app(retriever.directory.path, retriever=retriever,
                     config=ServiceConfig(max_batch=max_batch, max_wait_ms=200))
    server = Server(app)
    queries = [f"river flooding update number {i}" for i in range(16)]
    try:
        expected = {q: json.loads(json.dumps(retriever.search(q, k=3 + i % 2)[0].to_dict()))
                    for i, q in enumerate(queries)}
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda i: server.call("POST", "/search", {"queries": queries[i], "k": 3 + i % 2},
                                                          token=None), range(16)))
    finally:
        server.stop()
    assert all(status == 200 for status, _ in answers)
    for (_, answer), query in zip(answers, queries):  # a batch pads queries together: scores agree to rounding
        got, want = answer["results"][0], expected[query]
        assert got["query"] == query and {h["post_id"] for h in got["hits"]} == {h["post_id"] for h in want["hits"]}
        np.testing.assert_allclose([h["score"] for h in got["hits"]], [h["score"] for h in want["hits"]], atol=1e-4)
    batches = app.state.service.batcher.batches
    assert batches == 16 if max_batch == 1 else batches < 8, batches


def test_writable_add_and_delete_change_the_index_and_a_read_only_service_refuses(tmp_path, tiny_encoder, served):
    server, _ = served
    for path, body in (("/add", {"posts": [{"id": "x", "text": "a post"}]}), ("/delete", {"post_ids": ["1001"]})):
        status, answer = server.call("POST", path, body)
        assert status == 403 and "--writable" in answer["error"]

    write_corpus(tmp_path / "posts.jsonl")
    build_index([tmp_path / "posts.jsonl"], tmp_path / "index", BuildConfig(encoder=tiny_encoder.config,
                                                                             progress=False), encoder=tiny_encoder)
    writable = Server(create_app(tmp_path / "index", retriever=Retriever(tmp_path / "index", encoder=tiny_encoder),
                                 config=ServiceConfig(writable=True)))
    try:
        posts = [{"id": f"lava{i}", "text": f"lava flows toward the village road {i} #lava", "author": "obs",
                  "created_at": f"0{i + 1}/05/2024 10:00"} for i in range(3)] + [{"id": "1001", "text": "a known post id"}]
        bad = [{"text": ""}, {"id": {"a": 1}, "text": "an id object"}, {"text": "lone \ud800"}, {"words": "x"},
               {"text": "a time", "created_at": "yesterday"}]
        status, answer = writable.call("POST", "/add", {"posts": posts + bad, "time_format": "%d/%m/%Y %H:%M"},
                                       token=None)
        assert status == 422 and answer["error"] == (
            "nothing added: posts[4]: text is empty (empty_text); posts[5]: the post id is an object, not a string "
            "or a number (bad_field); posts[6]: text is not valid UTF-8 (bad_utf8); posts[7]: no text field among "
            "keys words (missing_text); posts[8]: its time cannot be read (bad_created_at); write it in ISO 8601 or "
            "name its format in the request's time_format (a strptime format such as %d/%m/%Y %H:%M, unix or "
            "unix_ms)"), answer
        assert "hicl-serve" not in answer["error"] and "--time-format" not in answer["error"]
        assert writable.call("GET", "/info", token=None)[1]["posts"] == 62  # nothing was added
        status, answer = writable.call("POST", "/add", {"posts": posts}, token=None)
        assert status == 422 and "posts[0]: its time cannot be read" in answer["error"]
        for time_format in ("%Q", "%d\udcff"):
            status, answer = writable.call("POST", "/add", {"posts": posts, "time_format": time_format}, token=None)
            assert status == 400 and answer["error"].startswith(f"time_format {time_format!r} is not a strptime format")
        status, report = writable.call("POST", "/add", {"posts": posts, "time_format": "%d/%m/%Y %H:%M"}, token=None)
        assert status == 200 and (report["added"], report["known"], report["read"]) == (3, 1, 4), report
        status, lava = writable.call("GET", "/posts/lava2", token=None)
        assert (lava["source"], lava["line"], lava["created_at"]) == (report["source"], 3, "2024-05-03T10:00:00")
        assert re.fullmatch(r"http \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", report["source"])
        status, answer = writable.call("POST", "/search", {"queries": "lava flows", "k": 3, "dedupe": False,
                                                           "filter": [{"field": "hashtag", "op": "has",
                                                                       "value": "lava"}]}, token=None)
        assert sorted(hit["post_id"] for hit in answer["results"][0]["hits"]) == ["lava0", "lava1", "lava2"]
        assert writable.call("POST", "/delete", {"post_ids": ["lava0"], "filter": [
            {"field": "author", "op": "in", "value": ["nobody"]}]}, token=None) == (200, {"deleted": 1})
        assert writable.call("GET", "/posts/lava0", token=None)[0] == 404
        assert writable.call("GET", "/posts/lava1", token=None)[0] == 200
        assert writable.call("POST", "/add", {"posts": []}, token=None)[0] == 400
        assert writable.call("POST", "/add", {"posts": "lava"}, token=None)[0] == 422
        assert writable.call("POST", "/add", {"posts": [posts[0], 5]}, token=None) == (
            422, {"error": "posts[1]: Input should be a valid dictionary"})
        status, answer = writable.call("POST", "/delete", {}, token=None)
        assert status == 400 and "say which posts to delete" in answer["error"]
    finally:
        writable.stop()


def test_stats_equal_duckdb_queries_over_the_segments_and_follow_a_change(tmp_path, tiny_encoder):
    import duckdb

    index = built_index(tmp_path, tiny_encoder)
    retriever = Retriever(index, encoder=tiny_encoder)
    server = Server(create_app(index, retriever=retriever, config=ServiceConfig(writable=True)))
    try:
        status, stats = server.call("GET", "/stats")
        assert status == 200
        con = duckdb.connect()
        for number, path in enumerate(sorted(index.glob("seg-*.duckdb"))):
            con.execute(f"ATTACH '{path}' AS s{number} (READ_ONLY)")
        union = " UNION ALL ".join(f"SELECT * FROM s{n}.posts" for n in range(len(list(index.glob("seg-*.duckdb")))))
        days = con.execute(f"SELECT strftime(created_at, '%Y-%m-%d') AS d, count(*) FROM ({union}) "
                           "WHERE created_at IS NOT NULL GROUP BY d ORDER BY d").fetchall()
        tags = con.execute(f"SELECT t, count(DISTINCT id) AS c FROM (SELECT id, unnest(hashtags) AS t FROM ({union})) "
                           "GROUP BY t ORDER BY c DESC, t LIMIT 10").fetchall()
        authors = con.execute(f"SELECT author, count(*) AS c FROM ({union}) WHERE author <> '' "
                              "GROUP BY author ORDER BY c DESC, author LIMIT 10").fetchall()
        assert stats["unit"] == "day" and stats["over_time"] == [list(row) for row in days]
        assert stats["hashtags"] == [list(row) for row in tags] and stats["hashtags"][0][0].startswith("#topic")
        assert stats["authors"] == [list(row) for row in authors] and len(stats["authors"]) == 7
        assert stats["posts"] == retriever.manifest.count and stats["deleted"] == 0
        assert [segment["posts"] for segment in stats["segments"]] == [s.posts for s in retriever.manifest.segments]
        assert server.call("GET", "/stats")[1] == stats  # cached: the same version
        assert server.call("POST", "/delete", {"post_ids": ["1001", "1002"]})[0] == 200
        status, changed = server.call("GET", "/stats")
        assert status == 200 and changed["deleted"] == 2 and changed["posts"] == stats["posts"] - 2
        assert sum(count for _, count in changed["over_time"]) == sum(count for _, count in stats["over_time"]) - 2
    finally:
        server.stop()
        retriever.close()
