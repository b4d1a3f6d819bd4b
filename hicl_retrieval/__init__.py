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

from .core.config import AdaptConfig, BuildConfig, DeviceConfig, EncoderConfig, RayConfig, ReaderConfig, resolve_encoder
from .core.errors import HiclError, IndexDamaged
from .index.filters import Condition, Filter

if TYPE_CHECKING:
    from .encoding.encoder import Encoder
    from .workflows.adapt import AdaptReport, adapt_index, remove_adapter
    from .workflows.build import BuildReport, build_index
    from .workflows.compact import compact, reindex
    from .workflows.export import export_index
    from .workflows.search import Hit, Retriever, SearchResult
    from .workflows.update import add_posts, add_records, delete_posts
    from .workflows.verify import VerifyReport, verify_index

_LAZY = {
    "Encoder": "encoding.encoder",
    "AdaptReport": "workflows.adapt",
    "adapt_index": "workflows.adapt",
    "remove_adapter": "workflows.adapt",
    "BuildReport": "workflows.build",
    "build_index": "workflows.build",
    "reindex": "workflows.compact",
    "add_posts": "workflows.update",
    "add_records": "workflows.update",
    "delete_posts": "workflows.update",
    "compact": "workflows.compact",
    "Hit": "workflows.search",
    "Retriever": "workflows.search",
    "SearchResult": "workflows.search",
    "VerifyReport": "workflows.verify",
    "export_index": "workflows.export",
    "verify_index": "workflows.verify",
}

__all__ = [
    "AdaptConfig", "AdaptReport", "BuildConfig", "BuildReport", "Condition", "DeviceConfig", "Filter", "Encoder", "EncoderConfig", "HiclError", "Hit",
    "IndexDamaged", "RayConfig", "ReaderConfig", "Retriever", "SearchResult", "VerifyReport", "add_posts", "add_records",
    "build_index", "compact", "delete_posts", "export_index", "reindex", "remove_adapter", "resolve_encoder", "verify_index",
    "adapt_index",
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
