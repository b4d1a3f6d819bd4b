"""Which FAISS index a corpus gets, and what it will cost in RAM and on disk, before any work.

`--index auto` keeps exact search (``Flat``) while a scan of every vector takes a couple of
milliseconds, and otherwise builds an inverted-file index with 4-bit product-quantised codes
searched by FAISS's fast-scan kernels (``IVF<n>,PQ<m>x4fs``): half a byte a dimension pair,
with the candidates re-ranked exactly from the float16 vectors on disk (``k_factor``), so
recall stays near exact while memory drops by 12x or more. Measured side by side on 154,095
384-d vectors (scripts/bench_search.py, 2 cores, one query at a time, recall@10 on new
queries): Flat 29.6 ms; ``IVF512,PQ192x4fs`` 0.38 ms, recall 0.975, 126 B a vector;
``IVF512,PQ48x8`` (8-bit codes of the size of ``PQ96x4fs``, scanned without SIMD) 3.26 ms,
recall 0.953; ``HNSW32`` 0.25 ms but recall 0.936 (tuned to 0.956 on corpus posts), 1,857 B
a vector (more than Flat) and 35 s to build against 2.3 s.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import HiclError

AUTO_FLAT_MAX_BYTES = 16 << 20
"""Up to this many bytes of float32 vectors (posts x dim x 4) `auto` searches exactly: about 2 ms a query
(a scan of 237 MB, 154,095 x 384, took 29.6 ms p50 on 2 cores): 10,922 posts at 384 dimensions, 5,461 at 768."""
TEXT_BYTES_PER_POST = 400
"""Rough DuckDB bytes per post (text, hashtags, ids, duplicate key), for the disk estimate."""
BUILD_WORKING_BYTES = 1 << 30
"""RAM besides the index during a build (encoder model, a chunk of posts, DuckDB's buffers)
when the encoder's own size is not known; a base-size model such as the HICL #Encoder needs it."""
RERANK_K_FACTOR = 10

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}


def parse_size(text: str) -> int:
    """Bytes in a size such as ``8GB``, ``512M``, ``1.5GiB`` or ``1000000``."""
    match = _SIZE.match(text)
    if not match:
        raise HiclError(f"cannot read the size {text!r}; write it like 8GB, 512MB or 1.5GiB")
    unit = (match.group(2) or "").lower()
    scale = _UNITS[unit[:1]] if "i" not in unit else 1024 ** " kmgt".index(unit[0])
    return int(float(match.group(1)) * scale)


def format_size(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def physical_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def ivf_lists(posts: int) -> int:
    """Inverted lists for `posts`: the power of two nearest sqrt(posts), between 16 and 65536."""
    return int(min(65536, max(16, 2 ** round(math.log2(max(1.0, math.sqrt(posts)))))))


def fast_scan_sizes(dim: int) -> list[int]:
    """4-bit PQ code sizes (sub-vectors a vector), largest first: sub-vectors of 2, 4 and 8 dims."""
    return [m for m in (dim // 2, dim // 4, dim // 8) if m >= 1 and dim % m == 0] or [dim]


def pq_sizes(dim: int) -> list[int]:
    """PQ code sizes (bytes a vector), largest first, that split `dim` into sub-vectors of 4 to 32 dims."""
    return [m for m in (dim // 4, dim // 8, dim // 16, dim // 32) if m >= 1 and dim % m == 0 and dim // m >= 4]


def index_ram(factory: str, posts: int, dim: int) -> int:
    """Estimated bytes of RAM a FAISS index of `factory` holds for `posts` vectors."""
    ids = 8 * posts
    id_map = 48 * posts if factory.startswith("IDMap2") else 8 * posts if factory.startswith("IDMap") else 0
    lists = re.search(r"IVF(\d+)", factory)
    centroids = int(lists.group(1)) * dim * 4 if lists else 0
    pq = re.search(r"PQ(\d+)(?:x(\d+))?", factory)
    hnsw = re.search(r"HNSW(\d+)", factory)
    if pq:
        codes = int(pq.group(1)) * int(pq.group(2) or 8) // 8
        codes_ram = posts * codes + 256 * dim * 4
    elif "SQ8" in factory:
        codes_ram = posts * dim
    elif "SQ4" in factory:
        codes_ram = posts * dim // 2
    elif "SQfp16" in factory:
        codes_ram = posts * dim * 2
    else:
        codes_ram = posts * dim * 4
    graph = posts * int(hnsw.group(1)) * 2 * 4 * 11 // 10 if hnsw else 0
    opq = dim * dim * 4 if "OPQ" in factory else 0
    return codes_ram + (ids if lists else id_map) + centroids + graph + opq


@dataclass(frozen=True)
class IndexPlan:
    """The FAISS index a build will make and what it needs."""

    factory: str
    posts: int
    """Posts the plan is for (an estimate before the corpus is read)."""
    dim: int
    k_factor: int
    index_ram: int
    """Bytes the FAISS index holds in RAM when searched."""
    build_ram: int
    """Peak bytes of RAM during the build: index, training sample, encoder, buffers."""
    disk: int
    """Bytes the index directory will take: float16 vectors, FAISS file, post store."""
    train_rows: int

    def describe(self) -> str:
        return (
            f"index {self.factory} for ~{self.posts:,} posts x {self.dim} dims: "
            f"~{format_size(self.index_ram)} RAM to search, ~{format_size(self.build_ram)} to build, "
            f"~{format_size(self.disk)} on disk"
        )


_NAMED = ("auto", "flat", "hnsw", "ivf", "ivfpq")


def factory_for(
    spec: str, posts: int, dim: int, max_memory: int | None = None, *, working: int = BUILD_WORKING_BYTES
) -> str:
    """The factory string for an index `spec`: a name of `_NAMED` or a FAISS factory string.

    `auto`: ``Flat`` up to `AUTO_FLAT_MAX_BYTES` of vectors when it fits `max_memory`, else
    ``IVF<n>,PQ<m>x4fs`` with the largest code size `m` whose index fits (see the module's docstring).
    """
    name = spec.strip().lower()
    lists = ivf_lists(posts)
    budget = max_memory if max_memory is not None else physical_memory()
    if name == "flat":
        return "Flat"
    if name == "hnsw":
        return "HNSW32"
    if name == "ivf":
        return f"IVF{lists},Flat"
    if name == "ivfpq":
        return f"IVF{lists},PQ{dim // 8 if dim % 8 == 0 else pq_sizes(dim)[-1]}x8"
    if name != "auto":
        return spec.strip()
    flat = plan_index("IDMap2,Flat", posts, dim, k_factor=1, working=working)
    if posts * dim * 4 <= AUTO_FLAT_MAX_BYTES and flat.build_ram <= budget:
        return "Flat"
    for m in fast_scan_sizes(dim):
        factory = f"IVF{lists},PQ{m}x4fs"
        if plan_index(factory, posts, dim, k_factor=RERANK_K_FACTOR, working=working).build_ram <= budget:
            return factory
    return f"IVF{lists},PQ{fast_scan_sizes(dim)[-1]}x4fs"


def train_rows(factory: str, posts: int) -> int:
    """Vectors sampled to train `factory`: 64 per inverted list (FAISS wants at least 39), at most 262,144,
    but never fewer than its k-means needs (`least_train_rows`) when there are enough posts."""
    lists = re.search(r"IVF(\d+)", factory)
    wanted = 64 * int(lists.group(1)) if lists else 65536
    wanted = min(max(wanted if "PQ" not in factory else max(wanted, 16384), 1), 262_144)
    return min(posts, max(wanted, least_train_rows(factory)))


POINTS_PER_CENTROID = 39
"""Training points a k-means centroid should have: FAISS warns below it (and fails below one)."""
_IVF = re.compile(r"IVF(\d+)")
_PQ = re.compile(r"(?<![O\d])PQ(\d+)(?:x(\d+))?")
_OPQ = re.compile(r"OPQ\d+(?:_\d+)?,")


def least_train_rows(factory: str) -> int:
    """Vectors FAISS needs to train `factory` at all: a point per centroid of each k-means it runs
    (one per inverted list; 2^nbits per PQ sub-quantizer; 256 for an OPQ rotation), 1 if it trains none."""
    lists, pq = _IVF.search(factory), _PQ.search(factory)
    return max(int(lists.group(1)) if lists else 1, 2 ** int(pq.group(2) or 8) if pq else 1,
               256 if _OPQ.search(factory) else 1)


def training_shortfall(factory: str, posts: int, *, about: bool = False) -> tuple[str, str] | None:
    """Why `posts` vectors (`about` that many, an estimate) are too few to train `factory`, and a factory
    string that they train well (``Flat`` where they are too few for any clustering); None when they suffice.

    ``IVF4096,Flat`` on 1092 posts -> ("IVF4096 needs at least 4096 posts to train its lists; these 1092
    posts allow at most IVF1092 (FAISS advises 39 posts a list: IVF28)", "IVF28,Flat")
    """
    these = f"these {'~' if about else ''}{posts} posts"
    advised = posts // POINTS_PER_CENTROID  # centroids a k-means on these posts trains well
    problems: list[str] = []
    changes: list[tuple[re.Match, str | None]] = []  # parts of `factory` to replace so that it fits (None: none does)
    lists = _IVF.search(factory)
    if lists and posts < int(lists.group(1)):
        problems.append(f"{lists.group(0)} needs at least {lists.group(1)} posts to train its lists; {these} "
                        f"allow at most IVF{posts}"
                        + (f" (FAISS advises {POINTS_PER_CENTROID} posts a list: IVF{advised})" if advised > 1 else ""))
        changes.append((lists, f"IVF{advised}" if advised > 1 else None))
    pq = _PQ.search(factory)
    nbits = int(pq.group(2) or 8) if pq else 0
    if pq and posts < 2**nbits:
        most, bits = int(math.log2(max(posts, 1))), int(math.log2(max(advised, 1)))
        problems.append(f"PQ{pq.group(1)}x{nbits} needs at least {2**nbits} posts to train its codes "
                        f"(2^{nbits} centroids a sub-vector); {these} allow at most PQ{pq.group(1)}x{most}"
                        + (f" (FAISS advises {POINTS_PER_CENTROID} posts a centroid: PQ{pq.group(1)}x{bits})"
                           if bits > 1 else ""))
        changes.append((pq, f"PQ{pq.group(1)}x{bits}" if bits > 1 else None))
    opq = _OPQ.search(factory)
    if opq and posts < 256:
        problems.append(f"its OPQ rotation needs at least 256 posts to train; {these} are fewer")
        changes.append((opq, ""))  # dropped
    if not problems:
        return None
    if any(replacement is None for _, replacement in changes):
        return "; ".join(problems), "Flat"  # too few posts for any clustering to pay: search them all
    fitting = factory
    for match, replacement in sorted(changes, key=lambda change: -change[0].start()):
        fitting = fitting[: match.start()] + replacement + fitting[match.end():]
    return "; ".join(problems), as_given(fitting)


def as_given(factory: str) -> str:
    """A factory string as a user writes it: without the ``IDMap`` that the index built from it wraps it in."""
    return factory.removeprefix("IDMap2,").removeprefix("IDMap,")


TRAINING_ADVICE = "choose --index {fitting} or --index auto"
"""What a build or reindex refused by `check_trainable` should do; {fitting}: a factory string the posts can train."""
ESTIMATE_SLACK = 1.25
"""How far below the truth a corpus's estimated record count may be (it scales a sample of each big file)."""


def check_trainable(factory: str, posts: int, *, about: bool = False, advice: str = TRAINING_ADVICE) -> None:
    """Raise a `HiclError` when `posts` vectors are too few to train `factory` (see `training_shortfall`),
    ending with `advice` ({fitting} replaced), before FAISS fails on it with a traceback.

    With `about` (`posts` is an estimate, 0 when unknown) only a count short even with `ESTIMATE_SLACK`
    more posts is refused: a build checks its estimate before encoding, and its true count after.
    """
    if about and (not posts or training_shortfall(factory, math.ceil(posts * ESTIMATE_SLACK)) is None):
        return
    shortfall = training_shortfall(factory, posts, about=about)
    if shortfall is not None:
        problem, fitting = shortfall
        raise HiclError(f"{problem}; {advice.replace('{fitting}', fitting)}")


def plan_index(
    factory: str, posts: int, dim: int, *, k_factor: int, working: int = BUILD_WORKING_BYTES
) -> IndexPlan:
    ram = index_ram(factory, posts, dim)
    training = train_rows(factory, posts) * dim * 4 if ("IVF" in factory or "PQ" in factory) else 0
    add_buffer = min(posts, 65536) * dim * 6  # float16 rows read and their float32 copy
    return IndexPlan(
        factory=factory, posts=posts, dim=dim, k_factor=k_factor, index_ram=ram,
        build_ram=ram + training + add_buffer + working,
        disk=posts * dim * 2 + ram + posts * TEXT_BYTES_PER_POST, train_rows=train_rows(factory, posts),
    )


def check_fits(plan: IndexPlan, *, max_memory: int | None, free_disk: int | None = None) -> None:
    """Raise a `HiclError` that says what to change when `plan` needs more RAM or disk than there is."""
    budget = max_memory if max_memory is not None else physical_memory()
    if plan.build_ram > budget:
        raise HiclError(
            f"{plan.describe()}; that exceeds the memory budget of {format_size(budget)}. "
            "Use --index auto (compressed codes, re-ranked from disk), a smaller PQ code, or raise --max-memory"
        )
    if free_disk is not None and plan.disk > free_disk:
        raise HiclError(
            f"{plan.describe()}; only {format_size(free_disk)} are free on the index's disk. "
            "Free some space or choose another --out"
        )


def free_disk(path: Path) -> int:
    """Free bytes on the disk `path` will be on (it may not exist yet)."""
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free
