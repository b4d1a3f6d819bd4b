"""Reading the index: a post by its post id, the index's summary, and the service's health."""

from __future__ import annotations

import weakref
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ...core.text import check_unicode
from ...index.stats import index_stats
from ..state import Service, service

router = APIRouter()


@router.get("/health")
def health(served: Service = Depends(service)) -> JSONResponse:
    """ok, or 503 with what is wrong with the index (a damaged file, a version that cannot be opened)."""
    problem = served.live.check()
    body = {"status": "ok" if problem is None else "damaged", "posts": served.live.retriever.manifest.count,
            "token_required": served.config.token is not None}
    if problem is not None:
        body["error"] = f"the index cannot answer: {problem}"
    return JSONResponse(body, status_code=200 if problem is None else 503)


@router.get("/info")
def info(served: Service = Depends(service)) -> dict:
    with served.live.current() as retriever:
        manifest, config = retriever.manifest, served.config
        encoder = manifest.encoder
        return {
            "index": str(retriever.directory.path), "posts": manifest.count, "format": manifest.format_version,
            "encoder": {"model": encoder.model, "preset": encoder.preset, "pooling": encoder.pooling,
                        "max_length": encoder.max_length, "dtype": encoder.dtype, "dim": manifest.dim},
            "faiss": manifest.faiss_factory, "search_params": manifest.search_params,
            "segments": len(manifest.segments), "deleted": manifest.deleted, "created_at": manifest.created_at,
            "device": retriever.encoder.device_name, "writable": config.writable,
            "limits": {"max_k": config.max_k, "max_queries": config.max_queries, "max_hits": config.max_hits,
                       "max_query_chars": config.max_query_chars, "max_body_bytes": config.max_body_bytes},
        }


@router.get("/stats")
def stats(served: Service = Depends(service)) -> dict:
    """Posts over time, the most frequent hashtags and authors, segments and deleted rows: computed once per
    index version (an add or delete makes a new one)."""
    with served.live.current() as retriever:
        cached = served.stats
        if cached is None or cached[0]() is not retriever:
            cached = (weakref.ref(retriever), index_stats(retriever.directory, retriever.manifest, retriever.store))
            served.stats = cached
        return cached[1]


@router.get("/posts/{post_id}")
def post(post_id: Annotated[str, "the post id the dump gave the post"], served: Service = Depends(service)) -> dict:
    check_unicode(post_id, "the post id")
    with served.live.current() as retriever:
        ids = retriever.store.ids_of_post_ids([post_id])
        rows = retriever.store.fetch(ids.tolist())
    if not rows:
        raise HTTPException(404, f"no post has the post id {post_id!r}")
    row = rows[min(rows)]
    return {"id": row.id, "post_id": row.post_id, "text": row.text, "hashtags": list(row.hashtags),
            "author": row.author, "created_at": row.created_at.isoformat() if row.created_at else None,
            "retweet_of": row.retweet_of, "source": row.source, "line": row.line}
