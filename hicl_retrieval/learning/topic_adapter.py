"""Training a topic adapter: a low-rank residual map of query vectors, learned from posts that share hashtags.

The anchor of a pair is a post encoded without its hashtags (as a query is searched), the
positive another indexed post carrying one of the anchor's hashtags, as stored (with its
tags, as the index holds it); the batch's other positives are the negatives, except those
that share a hashtag with the anchor, which are masked out rather than pushed away.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence

import numpy as np


class AnchorBatches:
    """Batches of (anchor, positive, false negatives) drawn over posts' eligible hashtags.

    `tags[i]` are post i's eligible hashtags; `anchors` the posts that may be anchors; posts in
    `excluded` are never drawn as anything (held out). An anchor is drawn uniformly, then one of
    its hashtags, then a positive among the other posts carrying it. `untagged` posts a batch
    from `untagged_pool` (the ids of posts without an eligible hashtag, most of a corpus) are
    drawn as extra negatives: a map learned on tagged posts alone would let them drift towards
    the queries.
    """

    def __init__(self, tags: Sequence[Sequence[str]], anchors: Sequence[int], excluded: set[int], *,
                 batch_size: int, untagged: int = 0, untagged_pool: np.ndarray | None = None, seed: int = 0) -> None:
        self.tags = tags
        self.by_tag: dict[str, list[int]] = defaultdict(list)
        for post, post_tags in enumerate(tags):
            if post not in excluded:
                for tag in post_tags:
                    self.by_tag[tag].append(post)
        self.pairable = {post: [tag for tag in tags[post] if len(self.by_tag[tag]) >= 2]
                         for post in anchors if post not in excluded}
        self.anchors = [post for post, post_tags in self.pairable.items() if post_tags]
        self.batch_size = min(batch_size, len(self.anchors))
        self.untagged_pool = np.zeros(0, dtype=np.int64) if untagged_pool is None else untagged_pool
        self.untagged = min(untagged, len(self.untagged_pool))
        self.rng = random.Random(seed)

    def __len__(self) -> int:
        return len(self.anchors)

    def batch(self) -> tuple[list[int], list[int], np.ndarray, np.ndarray]:
        """Anchor posts, positive posts, a (batch, batch) mask of the pairs (i, j != i) sharing a hashtag, and the
        ids of `untagged` posts without an eligible hashtag: negatives of every anchor."""
        anchors = self.rng.sample(self.anchors, self.batch_size)
        positives = []
        for anchor in anchors:
            candidates = self.by_tag[self.rng.choice(self.pairable[anchor])]
            positive = anchor
            while positive == anchor:
                positive = self.rng.choice(candidates)
            positives.append(positive)
        columns: dict[str, list[int]] = defaultdict(list)
        for column, positive in enumerate(positives):
            for tag in self.tags[positive]:
                columns[tag].append(column)
        shared = np.zeros((len(anchors), len(anchors)), dtype=bool)
        for row, anchor in enumerate(anchors):
            for tag in self.tags[anchor]:
                shared[row, columns.get(tag, [])] = True
        np.fill_diagonal(shared, False)
        drawn = self.rng.sample(range(len(self.untagged_pool)), self.untagged)
        return anchors, positives, shared, self.untagged_pool[drawn]


def low_rank_residual(dim: int, rank: int, seed: int):
    """``v + (v @ down) @ up`` as a torch module, starting as the identity (`up` is zero)."""
    import torch

    class LowRankResidual(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            generator = torch.Generator().manual_seed(seed)
            self.down = torch.nn.Parameter(torch.randn(dim, rank, generator=generator) * 0.01)
            self.up = torch.nn.Parameter(torch.zeros(rank, dim))

        def forward(self, vectors):
            return torch.nn.functional.normalize(vectors + (vectors @ self.down) @ self.up, dim=1)

        def arrays(self) -> tuple[np.ndarray, np.ndarray]:
            return self.down.detach().numpy().copy(), self.up.detach().numpy().copy()

    return LowRankResidual()
