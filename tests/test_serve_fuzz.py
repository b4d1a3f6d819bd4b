"""Fuzzing the service over real HTTP with Hypothesis: methods, paths, headers, bodies and their encodings.

The contract, for every request: never a 500, never a hang (each answer within 30 s), every error a JSON
``{"error": "..."}`` that names the problem, and searches sent meanwhile by an innocent client answered
exactly as before. CI runs the ``ci`` profile (conftest.py); ``HYPOTHESIS_PROFILE=explore`` runs thousands.
"""

from __future__ import annotations

import http.client
import json
import shutil
import threading
import urllib.parse

import pytest
from helpers import Server, built_index
from hypothesis import given
from hypothesis import strategies as st

from hicl_retrieval import Retriever

pytest.importorskip("uvicorn", reason="install the [serve] extra: pip install 'hicl-retrieval[serve]'")
from hicl_retrieval.service.app import create_app  # noqa: E402
from hicl_retrieval.service.config import ServiceConfig  # noqa: E402

TOKEN = "fuzz-token"
INNOCENT = {"queries": ["river flooding downtown", "football final"], "k": 5}
STATUSES = {200, 400, 401, 403, 404, 405, 408, 413, 422, 503}


class Innocent(threading.Thread):
    """A client searching the same thing over and over while the fuzzer runs; it records any answer that differs."""

    def __init__(self, server: Server) -> None:
        super().__init__(daemon=True)
        self.server, self.stopped, self.wrong, self.answered = server, threading.Event(), [], 0
        self.expected = self._ask()

    def _ask(self):
        status, answer = self.server.call("POST", "/search", INNOCENT)
        return status, [[(hit["post_id"], round(hit["score"], 3)) for hit in result["hits"]]
                        for result in answer.get("results", [])] or answer

    def run(self) -> None:
        while not self.stopped.is_set():
            got = self._ask()
            self.answered += 1
            if got != self.expected:
                self.wrong.append(got)

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=60)


@pytest.fixture(scope="module")
def servers(tmp_path_factory, tiny_encoder):
    """A read-only service with a token and an innocent client searching it, and a writable one without a token."""
    root = tmp_path_factory.mktemp("fuzz-serve")
    built_index(root, tiny_encoder)
    shutil.copytree(root / "index", root / "writable")
    retrievers = [Retriever(root / name, encoder=tiny_encoder) for name in ("index", "writable")]
    limits = {"max_k": 50, "max_hits": 400, "max_body_bytes": 8192, "max_wait_ms": 5, "body_timeout_s": 0.5}
    read_only = Server(create_app(root / "index", retriever=retrievers[0],
                                  config=ServiceConfig(token=TOKEN, **limits)), token=TOKEN)
    writable = Server(create_app(root / "writable", retriever=retrievers[1],
                                 config=ServiceConfig(writable=True, **limits)))
    innocent = Innocent(read_only)
    assert innocent.expected[0] == 200
    innocent.start()
    yield read_only, writable
    innocent.stop()
    assert innocent.answered > 0 and innocent.wrong == [], innocent.wrong[:3]
    for server in (read_only, writable):
        server.stop()
    for retriever in retrievers:
        retriever.close()


# Text with lone surrogates, invisible characters, NULs and every script among plain words.
texts = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["river flooding", "", " ", "\u200b", "\ud800 x", "x\udcff", "\x00", "#", "#flood", "@user",
                     "2024-05-01", "last tuesday", "1001", "-1", "9" * 30, "%s", "'; DROP TABLE posts; --"]),
)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True), texts)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(texts, inner, max_size=4)), max_leaves=12)
conditions = st.fixed_dictionaries({"field": st.one_of(st.sampled_from(["hashtag", "author", "created_at", "source"]),
                                                       texts),
                                    "op": st.one_of(st.sampled_from(["has", "lacks", "in", "not_in", ">=", "<"]), texts),
                                    "value": values})
# Mostly well-formed, so that most requests reach a search; now and then anything at all.
search_bodies = st.fixed_dictionaries(
    {"queries": st.one_of(texts, texts, st.lists(texts, max_size=5), values)},
    optional={"k": st.one_of(st.integers(-5, 60), st.integers(1, 10), values),
              "filter": st.one_of(st.lists(conditions, max_size=3), st.just([]), values),
              "dedupe": st.one_of(st.booleans(), values), "strip_hashtags": st.one_of(st.booleans(), values),
              "extra": values})
posts = st.one_of(st.fixed_dictionaries({"text": texts}, optional={"id": values, "author": values,
                                                                   "created_at": values, "retweet_of": values}),
                  values)
write_bodies = st.one_of(
    st.fixed_dictionaries({"posts": st.one_of(st.lists(posts, max_size=4), values)},
                          optional={"time_format": st.one_of(texts, st.sampled_from(["%d/%m/%Y", "unix", "%Q"]))}),
    st.fixed_dictionaries({}, optional={"post_ids": st.one_of(st.lists(texts, max_size=3), values),
                                        "filter": st.one_of(st.lists(conditions, max_size=2), values)}),
)
paths = st.one_of(
    st.sampled_from(["/search", "/add", "/delete", "/info", "/health", "/", "/docs", "/openapi.json", "/posts/1002"]),
    st.builds(lambda raw: "/posts/" + urllib.parse.quote(raw, safe=""), st.binary(max_size=12)),
    st.builds(lambda raw: "/" + urllib.parse.quote(raw, safe="/?=&"), st.binary(max_size=16)),
)


def encoded(value, encoding: str) -> bytes:
    text = json.dumps(value, ensure_ascii=encoding == "ascii-escapes")
    if encoding == "ascii-escapes":
        return text.encode()
    return text.encode(encoding, errors="surrogatepass" if encoding.startswith("utf") else "replace")


bodies = st.one_of(
    st.builds(encoded, st.one_of(search_bodies, search_bodies, write_bodies, values),
              st.sampled_from(["ascii-escapes", "ascii-escapes", "utf-8", "utf-8", "utf-16", "utf-32", "latin-1"])),
    st.builds(encoded, search_bodies, st.just("ascii-escapes")),
    st.binary(max_size=64),
    st.builds(lambda n: b'{"queries": "' + b"x" * n + b'"}', st.integers(8000, 9000)),
    st.just(b""),
)
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=30)
headers = st.fixed_dictionaries({}, optional={
    "Authorization": st.one_of(st.just(f"Bearer {TOKEN}"), st.just(f"bearer {TOKEN}"), header_text),
    "Content-Type": st.one_of(st.sampled_from(["application/json", "application/json; charset=utf-16", "text/plain",
                                               "application/x-www-form-urlencoded", "multipart/form-data"]),
                              header_text),
    "Content-Length": st.one_of(st.sampled_from(["-1", "abc", "99999999", "0", " 5"]), header_text),
    "Accept-Encoding": header_text,
})


def send(server: Server, method: str, path: str, body: bytes, extra: dict) -> tuple[int, bytes, str]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)  # a hang fails the test
    try:
        connection.putrequest(method, path, skip_accept_encoding="Accept-Encoding" in extra)
        for name, value in extra.items():
            connection.putheader(name, value.encode("latin-1"))
        if "Content-Length" not in extra and method not in ("GET", "HEAD"):
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body if method not in ("GET", "HEAD") or body else None)
        answer = connection.getresponse()
        return answer.status, answer.read(), answer.getheader("content-type") or ""
    except (ConnectionError, http.client.BadStatusLine, http.client.IncompleteRead):
        # a request whose declared length is not what it sends: the server may close the connection unanswered
        if "Content-Length" in extra:
            return 400, b'{"error": "connection closed"}', "application/json"
        raise
    finally:
        connection.close()


FRAMING_ERROR = (400, b"Invalid HTTP request received.")
"""uvicorn's own answer to a request it cannot frame (a Content-Length of -1, a header it cannot parse): the
HTTP parser refuses it before any application sees it, in plain text."""


def check(status: int, data: bytes, kind: str, method: str, extra: dict) -> None:
    assert status in STATUSES, (status, data[:300])
    if method == "HEAD" or (status == 200 and "html" in kind):
        return
    if (status, data) == FRAMING_ERROR and {"Content-Length", "Accept-Encoding", "Content-Type"} & set(extra):
        return
    answer = json.loads(data)
    if status >= 400:
        assert isinstance(answer, dict) and set(answer) >= {"error"} and isinstance(answer["error"], str)
        assert len(answer["error"]) > 5, answer


@given(method=st.sampled_from(["GET", "POST", "POST", "POST", "PUT", "DELETE", "HEAD", "OPTIONS"]), path=paths,
       body=bodies, extra=headers)
def test_any_request_gets_a_json_answer_and_no_500(servers, method, path, body, extra):
    read_only, _ = servers
    extra.setdefault("Authorization", f"Bearer {TOKEN}")
    check(*send(read_only, method, path, body, extra), method, extra)


@given(path=st.sampled_from(["/search", "/search", "/add", "/delete"]), body=bodies,
       content_type=st.sampled_from(["application/json", "text/plain"]))
def test_any_body_of_a_search_or_a_change_gets_a_json_answer_and_no_500(servers, path, body, content_type):
    _, writable = servers
    extra = {"Content-Type": content_type}
    check(*send(writable, "POST", path, body, extra), "POST", extra)
