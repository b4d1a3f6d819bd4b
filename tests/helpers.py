"""Helpers the test modules share: small topical corpora and a served app (fixtures live in conftest.py)."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np

from hicl_retrieval.index.directory import IndexDir

TOPICS = [
    "river flooding downtown streets evacuated",
    "wildfire smoke over the ridge tonight",
    "football final goes to penalties",
    "new phone launch sold out in minutes",
    "election debate fact check live",
]


def topical_rows(count: int, *, text: str = "{topic} note {i} #topic{t}", first_id: int = 0,
                 metadata: bool = True) -> list[dict]:
    """`count` posts cycling through the five `TOPICS`: ids from `first_id`, texts from the `text` template
    (``{topic}``, ``{i}``, ``{t}`` the topic's number, ``{r}`` i mod 13), and with `metadata` an author of seven
    and a day of May 2024."""
    rows = []
    for i in range(count):
        row = {"id": str(first_id + i), "text": text.format(topic=TOPICS[i % 5], i=i, t=i % 5, r=i % 13)}
        if metadata:
            row |= {"author": f"user{i % 7}", "created_at": f"2024-05-{1 + i % 28:02d}T10:00:00Z"}
        rows.append(row)
    return rows


def write_lines(path: Path, rows: list[dict], extra: list[str] = ()) -> None:
    """`rows` as JSON lines, then the raw lines `extra`."""
    path.write_text("\n".join([json.dumps(row) for row in rows] + list(extra)) + "\n", encoding="utf-8")


def write_corpus(path: Path) -> list[dict]:
    """60 topical posts, a retweet and a copy of post 0, a reused post id, a broken line and an empty text."""
    rows = topical_rows(60, text="{topic} update number {i} #topic{t}", first_id=1000)
    rows.append({"id": "2000", "text": "RT @user1: river flooding downtown streets evacuated update number 0 #topic0"})
    rows.append({"id": "2001", "text": "River flooding downtown streets evacuated update number 0 #topic0 https://t.co/zz"})
    rows.append({"id": "1003", "text": "a second post reusing an earlier post id"})
    write_lines(path, rows, ["{not json", json.dumps({"id": "3000", "text": ""})])
    return rows


def built_index(root: Path, encoder) -> Path:
    """`root`/index: `write_corpus`'s posts (in `root`/posts.jsonl) built with `encoder` (its manifest names the
    model, so a subprocess can load it too)."""
    from hicl_retrieval import BuildConfig, build_index

    write_corpus(root / "posts.jsonl")
    build_index([root / "posts.jsonl"], root / "index", BuildConfig(encoder=encoder.config, progress=False),
                encoder=encoder)
    return root / "index"


def write_posts(path: Path, count: int) -> list[dict]:
    """`count` topical posts with ids 0.. (every 97th also #rare)."""
    rows = topical_rows(count)
    for row in rows[::97]:
        row["text"] += " #rare"
    write_lines(path, rows)
    return rows


def write_big_corpus(path: Path, posts: int) -> None:
    """`posts` posts without metadata, a broken line after every 500th and a reused post id after every 700th."""
    lines = []
    for i, row in enumerate(topical_rows(posts, text="{topic} story {i} from reporter {r}", metadata=False)):
        lines.append(json.dumps(row))
        if i % 500 == 7:
            lines.append("{broken json line")
        if i % 700 == 3:
            lines.append(json.dumps({"id": str(i), "text": "the same post id again"}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def index_contents(path: Path) -> tuple[dict, Counter, dict]:
    """(posts by (post id, text, source, line) -> stored vector, reject lines counted, build stats) of an index."""
    directory = IndexDir(path)
    manifest = directory.read_manifest()
    vectors = directory.open_vectors(manifest)
    with directory.open_store(manifest) as store:
        rows = store.con.execute("SELECT id, post_id, text, source, line FROM posts ORDER BY id").fetchall()
    stored = vectors[np.array([row[0] for row in rows], dtype=np.int64)].astype(np.float32)
    posts = {(post_id, text, source, line): vector for (_, post_id, text, source, line), vector in zip(rows, stored)}
    assert len(posts) == len(rows) == manifest.count == directory.open_faiss(manifest).size
    rejects = Counter(directory.file("rejects.jsonl").read_text(encoding="utf-8").splitlines())
    stats = {k: manifest.stats[k] for k in ("read", "indexed", "rejected", "duplicates", "repeated_texts")}
    return posts, rejects, stats


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """A uvicorn server of `app` in a thread, on a free loopback port."""

    def __init__(self, app, token: str | None = None) -> None:
        import uvicorn

        self.token = token
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            assert time.time() < deadline, "the server did not start"
            time.sleep(0.02)

    def call(self, method: str, path: str, body=None, *, raw: bytes | None = None, token: str | None = "default",
             headers: dict | None = None, timeout: float = 30) -> tuple[int, dict]:
        """(status, JSON answer); `token` "default" sends the server's own token, None sends none."""
        token = self.token if token == "default" else token
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json", **(headers or {})})
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def drawn_png(png: Path) -> tuple[int, int]:
    """A PNG decoded back: its size, checked to hold more than a blank canvas."""
    from matplotlib.image import imread

    pixels = imread(png)
    assert pixels.ndim == 3 and len(np.unique(pixels.reshape(-1, pixels.shape[2]), axis=0)) > 20
    return pixels.shape[1], pixels.shape[0]
