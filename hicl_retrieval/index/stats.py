"""The shape of an index: posts over time, its most frequent hashtags and authors, its segments and deleted rows.

Each figure is one DuckDB query over the live posts (the post store's ``posts`` view); a
service computes them once per index version (service/routes/posts.py).
"""

from __future__ import annotations

from typing import Any

from ..core.plots import Bars
from .directory import IndexDir
from .manifest import Manifest
from .store import PostStore
from .usage import usage

DAYS_BY_DAY = 366
"""Posts over a longer span are counted by month."""


def index_stats(directory: IndexDir, manifest: Manifest, store: PostStore, top: int = 10) -> dict[str, Any]:
    con = store.con
    first, last, dated = con.execute(
        "SELECT min(created_at), max(created_at), count(created_at) FROM posts").fetchall()[0]
    unit = "day" if first is None or (last - first).days <= DAYS_BY_DAY else "month"
    over_time = con.execute(
        "SELECT strftime(date_trunc(?, created_at), ?), count(*) FROM posts WHERE created_at IS NOT NULL "
        "GROUP BY 1 ORDER BY 1", [unit, "%Y-%m-%d" if unit == "day" else "%Y-%m"]).fetchall()
    hashtags = con.execute(
        "SELECT tag, count(*) AS posts FROM (SELECT DISTINCT id, unnest(hashtags) AS tag FROM posts) "
        "GROUP BY tag ORDER BY posts DESC, tag LIMIT ?", [top]).fetchall()
    authors = con.execute(
        "SELECT author, count(*) AS posts FROM posts WHERE author IS NOT NULL AND author <> '' "
        "GROUP BY author ORDER BY posts DESC, author LIMIT ?", [top]).fetchall()
    segments = usage(directory, manifest)
    return {
        "posts": manifest.count,
        "dated": int(dated),
        "first": first.isoformat() if first else None,
        "last": last.isoformat() if last else None,
        "unit": unit,
        "over_time": [[period, int(count)] for period, count in over_time],
        "hashtags": [[tag, int(count)] for tag, count in hashtags],
        "authors": [[author, int(count)] for author, count in authors],
        "segments": [{"name": row.name, "posts": row.posts, "deleted": row.deleted, "bytes": row.bytes}
                     for row in segments],
        "deleted": sum(row.deleted for row in segments),
    }


def shape_panels(stats: dict[str, Any]) -> list[Bars]:
    """`index_stats`'s figures as the panels `info --plot` draws (the search page draws the same in SVG)."""
    segments = stats["segments"]
    return [
        Bars(f"posts by {stats['unit']}", [period for period, _ in stats["over_time"]],
             {"posts": [n for _, n in stats["over_time"]]}, empty="no post has a time"),
        Bars("most frequent hashtags (posts)", [tag for tag, _ in stats["hashtags"]],
             {"posts": [n for _, n in stats["hashtags"]]}, horizontal=True, empty="no post has a hashtag"),
        Bars("most frequent authors (posts)", ["@" + author for author, _ in stats["authors"]],
             {"posts": [n for _, n in stats["authors"]]}, horizontal=True, empty="no post has an author"),
        Bars("segments (rows)", [segment["name"] for segment in segments],
             {"live": [s["posts"] - s["deleted"] for s in segments], "deleted": [s["deleted"] for s in segments]},
             horizontal=True, empty="no segment"),
    ]
