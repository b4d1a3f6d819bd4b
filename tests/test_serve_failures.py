"""The service when things go wrong: one request's bad input, slow or abandoned work, a damaged index, a bad
start. Each case answers its own request, in JSON, with the status that says whose fault it is."""

import http.client
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers import Server, built_index, free_port

from hicl_retrieval import HiclError, Retriever
from hicl_retrieval.cli import main

pytest.importorskip("uvicorn", reason="install the [serve] extra: pip install 'hicl-retrieval[serve]'")
from hicl_retrieval.service.app import create_app  # noqa: E402
from hicl_retrieval.service.config import ServiceConfig  # noqa: E402

INNOCENT = [f"river flooding update number {i}" for i in range(10)]


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_encoder):
    return built_index(tmp_path_factory.mktemp("failures"), tiny_encoder)


@pytest.fixture
def index(built, tmp_path):
    shutil.copytree(built, tmp_path / "index")
    return tmp_path / "index"


def serve(index, encoder, **config):
    retriever = Retriever(index, encoder=encoder)
    return Server(create_app(index, retriever=retriever, config=ServiceConfig(**config))), retriever


def search(server, query, **body):
    return server.call("POST", "/search", {"queries": query, "k": 3, **body}, token=None)


def essence(answer):
    """An answer's hits as (post id, score to 3 places): encoding in a batch pads queries, moving scores a little."""
    return [[(hit["post_id"], round(hit["score"], 3)) for hit in result["hits"]] for result in answer["results"]]


def together(server, bodies):
    """Send every body at once (one micro-batch, with a long enough max_wait_ms); their (status, answer)."""
    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(lambda body: server.call("POST", "/search", body, token=None), bodies))


def test_a_bad_request_in_a_batch_fails_alone(index, tiny_encoder, monkeypatch):
    server, retriever = serve(index, tiny_encoder, max_wait_ms=300)
    expected = {query: search(server, query)[1] for query in INNOCENT}
    encode = retriever.encoder.encode

    def fragile(texts, **options):  # an encoder failure that no check foresaw, caused by one query
        if any("boom" in text for text in texts):
            raise RuntimeError("the tokenizer choked")
        return encode(texts, **options)

    monkeypatch.setattr(retriever.encoder, "encode", fragile)
    try:
        for bad in ({"queries": "\ud800 x", "k": 3}, {"queries": "boom goes the query", "k": 3},
                    {"queries": "river", "k": 3, "filter": [{"field": "author", "op": "in", "value": ["\udcff"]}]}):
            batches = server.server.config.app.state.service.batcher.batches
            answers = together(server, [{"queries": query, "k": 3} for query in INNOCENT] + [bad])
            assert [(status, essence(answer)) for status, answer in answers[:-1]] == [
                (200, essence(expected[query])) for query in INNOCENT]
            status, answer = answers[-1]
            assert status in (400, 500) and answer["error"], answer
            if "boom" in bad["queries"]:
                assert answer == {"error": "the service failed (RuntimeError); its log has the details"}
            assert server.server.config.app.state.service.batcher.batches - batches <= 3  # they were batched
    finally:
        server.stop()
        retriever.close()


def test_a_request_may_ask_only_so_many_hits(index, tiny_encoder):
    server, retriever = serve(index, tiny_encoder, max_hits=100)
    try:
        status, answer = server.call("POST", "/search", {"queries": ["river"] * 256, "k": 1000}, token=None)
        assert (status, answer) == (400, {"error": "256 queries x k=1000 ask for 256000 hits; at most 100 a request: "
                                                   "send fewer queries or a smaller k"})
        assert server.call("POST", "/search", {"queries": ["river"] * 10, "k": 10}, token=None)[0] == 200
    finally:
        server.stop()
        retriever.close()


def test_a_search_whose_requester_timed_out_or_left_is_dropped(index, tiny_encoder, monkeypatch):
    server, retriever = serve(index, tiny_encoder, timeout_s=0.5, max_batch=1)
    encoded, encode = [], retriever.encoder.encode

    def slow(texts, **options):  # the first search holds the batcher for two seconds
        encoded.extend(texts)
        time.sleep(2.0 if "slow" in texts[0] else 0)
        return encode(texts, **options)

    monkeypatch.setattr(retriever.encoder, "encode", slow)
    try:
        first = threading.Thread(target=search, args=(server, "the first, slow search"))
        first.start()
        time.sleep(0.2)
        started = time.perf_counter()
        status, answer = search(server, "a search that times out in the queue")
        assert status == 503 and "did not finish within 0.5 s" in answer["error"]
        assert time.perf_counter() - started < 1.0
        # a client that leaves: its socket closes after 0.3 s, while the first search still holds the batcher
        with pytest.raises(OSError):
            server.call("POST", "/search", {"queries": "a search whose client leaves", "k": 3}, token=None,
                        timeout=0.3)
        first.join()  # it timed out too, but its encoding, begun, goes on to its end
        time.sleep(2.2 - (time.perf_counter() - started))
        assert search(server, "river flooding")[0] == 200
        assert encoded == ["the first, slow search", "river flooding"]
    finally:
        server.stop()
        retriever.close()


def test_a_search_of_many_hits_stops_soon_after_its_requester_leaves(index, tiny_encoder, monkeypatch):
    server, retriever = serve(index, tiny_encoder, timeout_s=0.5)
    searched, search_vectors = [], retriever.search_vectors

    def slow(vectors, k, **options):  # 0.3 s a call of the search
        searched.append(list(options["queries"]))
        time.sleep(0.3)
        return search_vectors(vectors, k, **options)

    monkeypatch.setattr(retriever, "search_vectors", slow)
    try:
        queries = [f"river flooding {i}" for i in range(10)]
        status, answer = server.call("POST", "/search", {"queries": queries, "k": 1000}, token=None)
        assert status == 503 and "did not finish within 0.5 s" in answer["error"]
        started = time.perf_counter()
        assert search(server, "phone launch")[0] == 200
        assert time.perf_counter() - started < 1.5  # not the 3 s the ten pieces would take
        assert 1 <= len([piece for piece in searched if piece[0].startswith("river")]) <= 3
        assert all(len(piece) == 1 for piece in searched)  # k=1000: one query a piece of 1,000 hits
    finally:
        server.stop()
        retriever.close()


def test_a_body_shorter_than_its_content_length_is_answered_408_in_time(index, tiny_encoder):
    server, retriever = serve(index, tiny_encoder, body_timeout_s=0.5)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as client:
            client.sendall(b'POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n'
                           b'Content-Length: 100\r\n\r\n{"queries": "river"}')
            started = time.perf_counter()
            answer = http.client.HTTPResponse(client)
            answer.begin()
            assert (answer.status, json.loads(answer.read())) == (
                408, {"error": "the body did not arrive within 0.5 s (is its Content-Length right?)"})
        assert time.perf_counter() - started < 3
    finally:
        server.stop()
        retriever.close()


def test_a_damaged_index_answers_503_and_health_says_so(index, tiny_encoder):
    server, retriever = serve(index, tiny_encoder)
    manifest = (index / "manifest.json").read_bytes()
    try:
        assert server.call("GET", "/health", token=None)[1]["status"] == "ok"
        # a new manifest that cannot be read, switched in as a change switches one
        (index / "manifest.json.new").write_text('{"format_version": 2, "segments": [', encoding="utf-8")
        (index / "manifest.json.new").replace(index / "manifest.json")
        status, answer = search(server, "river flooding")
        assert status == 503 and answer["error"].startswith("the index cannot answer: the index's new version cannot "
                                                            "be opened:") and "manifest.json is damaged" in answer["error"]
        status, health = server.call("GET", "/health", token=None)
        assert status == 503 and health["status"] == "damaged" and "manifest.json is damaged" in health["error"]
        (index / "manifest.json.new").write_bytes(manifest)
        (index / "manifest.json.new").replace(index / "manifest.json")
        assert search(server, "river flooding")[0] == 200
        assert server.call("GET", "/health", token=None) == (200, {"status": "ok", "posts": 62,
                                                                   "token_required": False})
        # a file of the open index that shrank under it
        vectors = index / "seg-0.f16"
        vectors.write_bytes(vectors.read_bytes()[:1000])
        status, health = server.call("GET", "/health", token=None)
        assert status == 503 and "seg-0.f16 has 1000 bytes" in health["error"] and "rebuild it" in health["error"]
    finally:
        server.stop()
        retriever.close()


def test_the_service_config_refuses_what_its_options_refuse():
    for settings, message in (({"max_batch": 0}, "--max-batch must be at least 1, not 0"),
                              ({"max_hits": 2.5}, "--max-hits must be a whole number, not 2.5"),
                              ({"max_wait_ms": -1}, "--max-wait-ms must be between 0 and 1000, not -1"),
                              ({"timeout_s": 0}, "--timeout must be above 0 and at most 3600, not 0"),
                              ({"token": "  "}, "the token must be a non-empty text")):
        with pytest.raises(HiclError, match=message):
            ServiceConfig(**settings)


def run_serve(index, *args, wait_for_line=False):
    """The serve command in its own process: (exit status or None while it runs, stdout, stderr)."""
    process = subprocess.Popen([sys.executable, "-m", "hicl_retrieval.cli", "serve", str(index), "--threads", "1",
                                *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if wait_for_line:
            line = process.stdout.readline()
            process.terminate()
            out, err = process.communicate(timeout=30)
            return None, line + out, err
        out, err = process.communicate(timeout=120)
        return process.returncode, out, err
    finally:
        process.kill()


def test_serve_refuses_anonymous_writes_beyond_loopback_and_warns_of_anonymous_reads(index, tmp_path):
    status, out, err = run_serve(index, "--host", "0.0.0.0", "--writable")
    assert status == 1 and out == "" and err == (
        "hicl-retrieval: error: --writable on --host 0.0.0.0 would let anyone who reaches it change the index: give "
        "--token-file, or serve on 127.0.0.1\n")
    port = free_port()
    status, out, err = run_serve(index, "--host", "0.0.0.0", "--port", str(port), wait_for_line=True)
    assert out.startswith(f"serving {index} at http://0.0.0.0:{port}")
    assert err.splitlines()[0] == ("hicl-retrieval: warning: serving 0.0.0.0 without --token-file: anyone who "
                                   "reaches it can search the index")
    (tmp_path / "token").write_text("t0ken\n")
    status, out, err = run_serve(index, "--host", "localhost", "--writable", "--port", str(free_port()),
                                 wait_for_line=True)
    assert out.startswith("serving") and "warning" not in err


def test_serve_on_a_port_in_use_fails_in_one_line(index):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        status, out, err = run_serve(index, "--port", str(port))
    assert status == 1 and out == "" and err == (
        f"hicl-retrieval: error: cannot listen on 127.0.0.1 port {port}: Address already in use; choose another "
        "--port (or stop what holds it)\n")
    assert main(["serve", str(index), "--host", "no-such-host.invalid"]) == 1
