"""What an index is: its encoder and FAISS type, and the immutable segments and deletion records that hold its posts.

The manifest is the only switch: a change writes new files, then a new manifest naming them
(atomically), so a reader that reads the manifest sees a whole index, the old one or the new.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from ..core.config import EncoderConfig
from .checksums import BLOCK_BYTES
from .rows import offsets_file

FORMAT_VERSION = 2
MANIFEST = "manifest.json"
REJECTS = "rejects.jsonl"
BUILD_STATE = "build.json"
WRITE_LOCK = "write.lock"


@dataclass(frozen=True)
class Segment:
    """One batch of posts, written once and never changed: float16 vectors, their ids, post rows, FAISS part."""

    name: str
    rows: int
    """Vector rows; the ids file names the post id of each, ascending."""
    posts: int
    """Rows in its post store (at most `rows`: a build drops posts repeating a post id, keeping their vectors)."""
    first_id: int
    last_id: int
    faiss_file: str
    """Its part of the FAISS index (`reindex` writes a new one)."""
    rows_file: str = ""
    """Its post rows by id for a search's hits (index/rows.py), with their offsets beside; "" in segments
    sealed before there were any, whose hits come from the post store."""
    post_ids_file: str = ""
    """Its post ids' sorted hashes for an add's check (index/post_ids.py); "" in segments sealed before."""
    post_id_buckets_file: str = ""
    """Where each bucket of those hashes begins (index/post_ids.py); "" in segments sealed before."""

    @property
    def vectors_file(self) -> str:
        return f"{self.name}.f16"

    @property
    def ids_file(self) -> str:
        return f"{self.name}.ids.npy"

    @property
    def store_file(self) -> str:
        return f"{self.name}.duckdb"

    @property
    def files(self) -> tuple[str, ...]:
        rows = (self.rows_file, offsets_file(self.rows_file)) if self.rows_file else ()
        return tuple(name for name in (self.vectors_file, self.ids_file, self.store_file, self.faiss_file, *rows,
                                       self.post_ids_file, self.post_id_buckets_file) if name)


@dataclass(frozen=True)
class Deletion:
    """A record of deleted ids (an int64 .npy file): searches skip them until `compact` drops their rows."""

    file: str
    count: int


@dataclass(frozen=True)
class Manifest:
    encoder: EncoderConfig
    dim: int
    faiss_factory: str
    count: int
    """Live posts: the posts of every segment less the deleted ones."""
    next_id: int
    """The id the next post gets: ids are unique across segments and never reused."""
    segments: tuple[Segment, ...] = ()
    deletions: tuple[Deletion, ...] = ()
    trained_file: str = ""
    """The FAISS index trained on the build's vectors and holding none: every segment's part starts as a
    copy of it, so that segments share one coarse quantizer (IVF) and one code book (PQ)."""
    model_revision: str | None = None
    k_factor: int = 1
    """Candidates per hit re-ranked exactly from the stored vectors (above 1 for compressed indexes)."""
    search_params: dict[str, int] = field(default_factory=dict)
    """FAISS search parameters set on opening (``nprobe``, ``efSearch``), as tuned at build time."""
    tuning: dict[str, Any] = field(default_factory=dict)
    """How `search_params` were chosen: target and reached recall@10 against exact search."""
    hashtag_rule: str = "hicl"
    """How the posts' hashtags were extracted (core/text.py); indexes without the field used the HICL rule."""
    adapter: dict[str, Any] = field(default_factory=dict)
    """The topic adapter queries are mapped through (index/adapter.py): its ``file``, ``rank`` and the
    held-out figures that justified it; empty when queries use the plain encoder."""
    stats: dict[str, Any] = field(default_factory=dict)
    files: dict[str, int] = field(default_factory=dict)
    """Size in bytes of each file, checked on open to catch truncated copies."""
    checksums: dict[str, list[str]] = field(default_factory=dict)
    """SHA-256 of each `checksum_block` bytes of each file, checked by `verify` (see checksums.py)."""
    checksum_block: int = BLOCK_BYTES
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    library_version: str = ""
    format_version: int = FORMAT_VERSION

    @property
    def deleted(self) -> int:
        """Rows deleted but still in segment files, until `compact`."""
        return sum(deletion.count for deletion in self.deletions)

    def named_files(self) -> list[str]:
        """Every file this index consists of, besides the manifest."""
        names = [name for segment in self.segments for name in segment.files]
        adapter = [self.adapter["file"]] if self.adapter else []
        return names + [deletion.file for deletion in self.deletions] + [self.trained_file, REJECTS] + adapter

    def with_segment(self, segment: Segment, **changes: Any) -> Manifest:
        return replace(self, segments=(*self.segments, segment), count=self.count + segment.posts,
                       next_id=max(self.next_id, segment.last_id + 1), **changes)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["encoder"] = self.encoder.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        data = dict(data)
        data["encoder"] = EncoderConfig.from_dict(data["encoder"], where="manifest encoder")
        data["segments"] = tuple(Segment(**segment) for segment in data.get("segments", ()))
        data["deletions"] = tuple(Deletion(**deletion) for deletion in data.get("deletions", ()))
        return cls(**data)
