"""hicl-retrieval: hashtag-driven retrieval of social-media posts.

Build an index over a corpus dump and query it for topically related posts::

    from hicl_retrieval import BuildConfig, Retriever, build_index, resolve_encoder

    report = build_index(["tweets.jsonl.gz"], "idx", BuildConfig(encoder=resolve_encoder("minilm")))
    with Retriever("idx") as retriever:
        for hit in retriever.search("flood waters rising downtown", k=5)[0].hits:
            print(hit.score, hit.text)

Heavy modules (torch, transformers, FAISS) load on first use, not on import.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from .config import BuildConfig, EncoderConfig, ReaderConfig, resolve_encoder
from .errors import HiclError
from .filters import Condition, Filter

if TYPE_CHECKING:
    from .encoder import Encoder
    from .indexer import BuildReport, build_index
    from .retriever import Hit, Retriever, SearchResult
    from .updates import add_posts, compact, delete_posts, reindex
    from .verify import VerifyReport, verify_index

_LAZY = {
    "Encoder": "encoder",
    "BuildReport": "indexer",
    "build_index": "indexer",
    "reindex": "updates",
    "add_posts": "updates",
    "delete_posts": "updates",
    "compact": "updates",
    "Hit": "retriever",
    "Retriever": "retriever",
    "SearchResult": "retriever",
    "VerifyReport": "verify",
    "verify_index": "verify",
}

__all__ = [
    "BuildConfig", "BuildReport", "Condition", "Filter", "Encoder", "EncoderConfig", "HiclError", "Hit", "ReaderConfig",
    "Retriever", "SearchResult", "VerifyReport", "add_posts", "build_index", "compact", "delete_posts", "reindex",
    "resolve_encoder", "verify_index",
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
