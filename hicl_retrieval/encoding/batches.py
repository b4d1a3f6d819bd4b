"""Encoder batches formed by a token budget over length-sorted posts.

A batch costs about its post count times its longest post (every post is padded to it), so a
fixed count of posts wastes the device on short posts and can run it out of memory on long
ones. Posts are sorted longest first and each batch takes as many as fit `max_tokens`
(count x longest <= budget): short posts travel in large batches, long ones in small.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..core.errors import HiclError


def token_batches(lengths: Sequence[int], max_tokens: int, max_posts: int | None = None) -> list[list[int]]:
    """Batches of positions into `lengths`, longest posts first; every position exactly once.

    No batch holds more than `max_tokens` padded tokens nor more than `max_posts` posts. A post
    longer than the budget cannot be split, so the budget must be at least the longest post
    (callers check it against the encoder's ``max_length``).
    """
    if max_tokens < 1:
        raise HiclError(f"--max-tokens-per-batch must be at least 1, not {max_tokens}")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    batches: list[list[int]] = []
    start = 0
    while start < len(order):
        width = max(1, lengths[order[start]])  # the longest post of the batch: sorted, so its first
        if width > max_tokens:
            raise HiclError(f"a post of {width} tokens does not fit --max-tokens-per-batch {max_tokens}")
        size = max_tokens // width
        if max_posts is not None:
            size = min(size, max_posts)
        batches.append(order[start : start + size])
        start += size
    return batches
