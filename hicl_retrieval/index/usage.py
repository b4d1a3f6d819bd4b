"""What an index's segments hold and what deleted rows cost, and when compacting pays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .directory import IndexDir
from .manifest import Manifest

MANY_SEGMENTS = 8
"""Past this many segments a query's search per part costs more than a merge: compact."""
DELETED_SHARE = 0.2
"""Past this share of deleted rows the files hold mostly what no search returns: compact."""


@dataclass(frozen=True)
class SegmentUsage:
    name: str
    posts: int
    deleted: int
    bytes: int

    @property
    def deleted_bytes(self) -> int:
        """The bytes the deleted rows hold, in proportion to the segment's rows."""
        return round(self.bytes * self.deleted / self.posts) if self.posts else 0


def usage(directory: IndexDir, manifest: Manifest) -> list[SegmentUsage]:
    deleted = directory.deleted_ids(manifest)
    rows = []
    for segment in manifest.segments:
        dropped = int(np.count_nonzero((deleted >= segment.first_id) & (deleted <= segment.last_id)))
        size = sum(manifest.files.get(name, 0) for name in segment.files)
        rows.append(SegmentUsage(segment.name, segment.posts, dropped, size))
    return rows


def compaction_advice(manifest: Manifest, rows: list[SegmentUsage]) -> str:
    """Whether `compact` pays now, and why."""
    posts = sum(row.posts for row in rows)
    deleted = sum(row.deleted for row in rows)
    reasons = []
    if len(rows) > MANY_SEGMENTS:
        reasons.append(f"{len(rows)} segments, each searched on its own")
    if posts and deleted / posts > DELETED_SHARE:
        reasons.append(f"{100 * deleted / posts:.0f}% of the rows are deleted")
    if reasons:
        return "compact pays: " + " and ".join(reasons)
    return (f"compacting does not pay yet (it does past {MANY_SEGMENTS} segments or "
            f"{100 * DELETED_SHARE:.0f}% deleted rows)")
