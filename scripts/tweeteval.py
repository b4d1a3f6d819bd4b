"""The TweetEval layout (``datasets/<task>/{split}_text.txt``), for benchmarks and experiments."""

from __future__ import annotations

from pathlib import Path


def all_tweets(data_dir: str | Path) -> list[str]:
    """Every tweet text of every task and split under ``data_dir/tweeteval``, de-duplicated, in a fixed order."""
    seen: dict[str, None] = {}
    for path in sorted(Path(data_dir, "tweeteval", "datasets").rglob("*_text.txt")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                seen.setdefault(line.strip(), None)
    return list(seen)
