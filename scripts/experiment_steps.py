"""Steps shared by the experiment scripts, whose every stage is kept in a work folder and reused."""

from __future__ import annotations

import time
from pathlib import Path

from hicl_retrieval.core.config import BuildConfig, resolve_encoder
from hicl_retrieval.index.directory import IndexDir
from hicl_retrieval.index.manifest import MANIFEST
from hicl_retrieval.workflows.build import build_index

HASHTAG_RULE = "hicl"
"""The experiments follow the HICL recipe: hashtags as its reference code extracts them."""


def stage(name: str, started: float) -> None:
    """One progress line: seconds since `started` and what was just done."""
    print(f"[{time.perf_counter() - started:7.0f} s] {name}", flush=True)


def index(corpus: list[Path], out: Path, encoder: str) -> Path:
    """Build, or reuse a finished index of the same encoder."""
    if not (out / MANIFEST).exists():
        build_index(corpus, out, BuildConfig(encoder=resolve_encoder(encoder), hashtag_rule=HASHTAG_RULE,
                                             progress=False))
    manifest = IndexDir(out).read_manifest()
    print(f"  {out.name}: {manifest.count} posts, {manifest.faiss_factory}, "
          f"built in {manifest.stats.get('seconds', 0):.0f} s", flush=True)
    return out
