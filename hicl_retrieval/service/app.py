"""The search service: one `Retriever`, opened once, answering JSON over HTTP (FastAPI).

The encoder loads when the service starts, not per request. Searches go through one thread
that encodes those arriving together as one batch (batching.py); the retriever is used by one
request at a time (its DuckDB connection and the model are not shared between threads).
The service follows its index: when the manifest has been switched (by an ``add``, ``delete``,
``compact`` or ``reindex`` of any process), the next request opens the new index, with the same
encoder, and the old one is closed; a request always answers from one whole index.
Every bad request gets a 4xx JSON answer ``{"error": "..."}`` naming the problem; a bearer
token, when set, is compared in constant time.
"""

from __future__ import annotations

import hmac
import importlib.resources
import json
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from ..core.config import DeviceConfig, ReaderConfig
from ..core.errors import HiclError
from ..core.times import parse_filter_time
from ..index.filters import Condition, Filter
from ..index.manifest import MANIFEST
from ..workflows.search import Retriever
from ..workflows.update import add_posts, delete_posts
from .batching import Busy, MicroBatcher, Search


@dataclass(frozen=True)
class ServiceConfig:
    """The limits and settings of a service."""

    max_k: int = 1000
    max_queries: int = 256
    """Queries of one request at most."""
    max_query_chars: int = 10_000
    """Characters of one query at most (the encoder reads at most its max_length tokens of it)."""
    max_body_bytes: int = 1 << 20
    token: str | None = None
    """A bearer token every request but /health must carry; None: no token."""
    max_batch: int = 64
    """Queries encoded together at most (batching.py); 1: every request alone."""
    max_wait_ms: float = 2.0
    """How long the first search of a batch waits for others."""
    max_pending: int = 1024
    """Searches waiting at most; past it a search is answered 503."""
    writable: bool = False
    """Whether POST /add and POST /delete change the index (else they answer 403)."""


class FilterCondition(BaseModel):
    """One condition of a filter, exactly the library's `Condition`: ``{"field": "hashtag", "op": "has", "value": "#flood"}``."""

    model_config = ConfigDict(extra="forbid")
    field: str
    op: str
    value: str | list[str]


class AddRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    posts: list[dict[str, Any]] = Field(description="posts as JSON objects with the JSON-lines reader's fields "
                                                    "(text, id, author, created_at, ...)")


class DeleteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    post_ids: list[str] = Field(default_factory=list)
    filter: list[FilterCondition] = Field(default_factory=list, description="posts meeting all of these")


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    queries: str | list[str] = Field(description="one post, or a list of posts")
    k: int = Field(10, description="hits per query")
    filter: list[FilterCondition] = Field(default_factory=list, description="conditions combined with AND")
    dedupe: bool = True
    strip_hashtags: bool = False


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _condition(given: FilterCondition) -> Condition:
    value: Any = given.value
    if given.field == "created_at":
        if not isinstance(value, str):
            raise HiclError("a created_at filter needs one time, e.g. \"2024-05-01\"")
        value = parse_filter_time(value)
    return Condition(given.field, given.op, value)


def _validation_message(exc: RequestValidationError) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        problems.append(f"{where or 'the body'}: {error.get('msg')}")
    return "; ".join(dict.fromkeys(problems))


class LiveIndex:
    """The retriever of the index as its manifest now names it, reopened when the manifest changes."""

    def __init__(self, retriever: Retriever, running: DeviceConfig | None) -> None:
        self.retriever, self.running = retriever, running
        self.lock = threading.Lock()
        self.seen = self._manifest_stamp()

    def _manifest_stamp(self) -> tuple[int, int, int] | None:
        """What tells one manifest from the next (a switch renames a new file into place); None
        when it cannot be read, and the open index keeps answering from the files it holds."""
        try:
            stat = os.stat(self.retriever.directory.file(MANIFEST))
        except OSError:
            return None
        return stat.st_ino, stat.st_mtime_ns, stat.st_size

    @contextmanager
    def current(self) -> Iterator[Retriever]:
        """The retriever of the index's current manifest, held for one request."""
        with self.lock:
            stamp = self._manifest_stamp()
            if stamp is not None and stamp != self.seen:
                old = self.retriever
                self.retriever = Retriever(old.directory.path, encoder=old.encoder, running=self.running)
                self.seen = stamp
                old.close()
            yield self.retriever


def create_app(index: str | Path, *, running: DeviceConfig | None = None, config: ServiceConfig | None = None,
               retriever: Retriever | None = None) -> FastAPI:
    """The service of the index at `index` (its `Retriever` made here, or `retriever`)."""
    config = config or ServiceConfig()
    live = LiveIndex(retriever or Retriever(index, running=running), running)
    batcher = MicroBatcher(live, max_batch=config.max_batch, max_wait=config.max_wait_ms / 1000,
                           max_pending=config.max_pending)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        batcher.close()

    app = FastAPI(title="hicl-retrieval", summary="top-k topically related posts of an index", lifespan=lifespan)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, _validation_message(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(HiclError)
    async def refused(request: Request, exc: HiclError) -> JSONResponse:
        return _error(503 if isinstance(exc, Busy) else 400, str(exc))

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > config.max_body_bytes):
            return _error(413, f"the body is over {config.max_body_bytes} bytes")
        if declared is None and request.method in ("POST", "PUT", "PATCH"):
            if len(await request.body()) > config.max_body_bytes:
                return _error(413, f"the body is over {config.max_body_bytes} bytes")
        return await call_next(request)

    def authorised(request: Request) -> None:
        if config.token is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {config.token}".encode()):
            raise HTTPException(401, "a bearer token is required: send 'Authorization: Bearer TOKEN'")

    guarded = [Depends(authorised)]

    @app.get("/health")
    def health() -> dict:
        with live.current() as retriever:
            return {"status": "ok", "posts": retriever.manifest.count, "token_required": config.token is not None}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        """The search page; it holds no data, so it needs no token (its calls to /search do)."""
        return HTMLResponse(_page())

    @app.get("/info", dependencies=guarded)
    def info() -> dict:
        with live.current() as retriever:
            return _info(retriever, config)

    @app.post("/search", dependencies=guarded)
    def search(request: SearchRequest) -> dict:
        queries = [request.queries] if isinstance(request.queries, str) else request.queries
        if not queries:
            raise HiclError("queries: give at least one post")
        if len(queries) > config.max_queries:
            raise HiclError(f"queries: at most {config.max_queries} a request, not {len(queries)}")
        if not 1 <= request.k <= config.max_k:
            raise HiclError(f"k must be between 1 and {config.max_k}, not {request.k}")
        for number, query in enumerate(queries, 1):
            if len(query) > config.max_query_chars:
                raise HiclError(f"query {number} has {len(query)} characters; at most {config.max_query_chars}")
        where = Filter(tuple(_condition(given) for given in request.filter))
        results = batcher.search(Search(queries, request.k, request.dedupe, request.strip_hashtags, where))
        return {"results": [result.to_dict() for result in results]}

    def writable() -> None:
        if not config.writable:
            raise HTTPException(403, "the service is read-only: start it with --writable to add and delete posts")

    changing = [*guarded, Depends(writable)]

    @app.post("/add", dependencies=changing)
    def add(request: AddRequest) -> dict:
        if not request.posts:
            raise HiclError("posts: give at least one post")
        index, encoder = live.retriever.directory.path, live.retriever.encoder  # the encoder never changes
        with tempfile.TemporaryDirectory(prefix="hicl-serve-") as folder:
            posts = Path(folder) / f"http-add-{time.time_ns()}.jsonl"
            posts.write_text("".join(json.dumps(post, ensure_ascii=False) + "\n" for post in request.posts),
                             encoding="utf-8")
            report = add_posts(index, [posts], reader=ReaderConfig(format="jsonl"), encoder=encoder, progress=False)
        return {"read": report.read, "added": report.added, "known": report.known,
                "rejected": dict(report.rejected), "warnings": report.warnings}

    @app.post("/delete", dependencies=changing)
    def delete(request: DeleteRequest) -> dict:
        where = Filter(tuple(_condition(given) for given in request.filter))
        return {"deleted": delete_posts(live.retriever.directory.path, post_ids=request.post_ids, filter=where)}

    @app.get("/posts/{post_id}", dependencies=guarded)
    def post(post_id: Annotated[str, "the post id the dump gave the post"]) -> dict:
        with live.current() as retriever:
            ids = retriever.store.ids_of_post_ids([post_id])
            rows = retriever.store.fetch(ids.tolist())
        if not rows:
            raise HTTPException(404, f"no post has the post id {post_id!r}")
        row = rows[min(rows)]
        return {"id": row.id, "post_id": row.post_id, "text": row.text, "hashtags": list(row.hashtags),
                "author": row.author, "created_at": row.created_at.isoformat() if row.created_at else None,
                "retweet_of": row.retweet_of, "source": row.source, "line": row.line}

    app.state.live, app.state.batcher = live, batcher
    return app


@lru_cache(maxsize=1)
def _page() -> str:
    return importlib.resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8")


def _info(retriever: Retriever, config: ServiceConfig) -> dict:
    manifest = retriever.manifest
    encoder = manifest.encoder
    return {
        "index": str(retriever.directory.path), "posts": manifest.count, "format": manifest.format_version,
        "encoder": {"model": encoder.model, "preset": encoder.preset, "pooling": encoder.pooling,
                    "max_length": encoder.max_length, "dtype": encoder.dtype, "dim": manifest.dim},
        "faiss": manifest.faiss_factory, "search_params": manifest.search_params,
        "segments": len(manifest.segments), "deleted": manifest.deleted, "created_at": manifest.created_at,
        "device": retriever.encoder.device_name, "writable": config.writable,
        "limits": {"max_k": config.max_k, "max_queries": config.max_queries, "max_query_chars": config.max_query_chars},
    }
