"""Positive pairs for hashtag-driven contrastive training: a tag vocabulary and a batch sampler.

Two posts sharing a hashtag are a positive pair; the other posts of the batch are negatives.
A batch in which two pairs share a hashtag would teach the model to push apart posts of the
same topic (a false negative), so the sampler never builds one.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ..core.errors import HiclError


@dataclass(frozen=True)
class TagVocabulary:
    """The hashtags that define topics: frequent enough to pair posts, rare enough to mean something."""

    tags: frozenset[str]
    counts: dict[str, int]
    too_rare: int
    """Distinct tags dropped for appearing in fewer than `min_count` posts."""
    too_common: list[str]
    """Tags dropped for appearing in more than `max_share` of the posts (dataset markers and the like)."""

    @classmethod
    def build(cls, post_tags: Sequence[Sequence[str]], *, min_count: int = 2, max_share: float = 0.01,
              posts: int | None = None) -> TagVocabulary:
        """Count each tag once a post; keep those in at least `min_count` posts and at most `max_share` of them
        (`posts`: how many there are in all, when `post_tags` leaves out those without a tag)."""
        if min_count < 2:
            raise HiclError(f"min_count must be at least 2 (a tag in one post makes no pair), not {min_count}")
        counts = Counter(tag for tags in post_tags for tag in set(tags))
        limit = max_share * (len(post_tags) if posts is None else posts)
        common = sorted(tag for tag, n in counts.items() if n > limit and n >= min_count)
        kept = frozenset(tag for tag, n in counts.items() if min_count <= n <= limit)
        rare = sum(1 for n in counts.values() if n < min_count)
        return cls(tags=kept, counts={t: counts[t] for t in kept}, too_rare=rare, too_common=common)

    def eligible(self, tags: Sequence[str]) -> list[str]:
        return [tag for tag in tags if tag in self.tags]


class PairBatches:
    """Batches of (anchor, positive) post indexes in which no hashtag appears in two pairs.

    Each step draws a tag at random, with probability proportional to its posts raised to
    `tag_power` (1: every eligible post about as likely to be drawn, so frequent tags dominate;
    0: every tag as likely, so specific tags weigh more), then two of its posts whose eligible
    tags are all new to the batch. A batch is closed when it holds `batch_size` pairs or
    `attempts` draws in a row fail.
    """

    def __init__(
        self, post_tags: Sequence[Sequence[str]], vocabulary: TagVocabulary, *, batch_size: int, seed: int = 0,
        tag_power: float = 1.0, attempts: int = 64,
    ) -> None:
        self.tags = [vocabulary.eligible(tags) for tags in post_tags]
        self.by_tag: dict[str, list[int]] = defaultdict(list)
        for post, tags in enumerate(self.tags):
            for tag in tags:
                self.by_tag[tag].append(post)
        self.tag_list = sorted(t for t, posts in self.by_tag.items() if len(posts) >= 2)
        if not self.tag_list:
            raise HiclError("no hashtag is shared by two posts after the vocabulary's limits; nothing to pair")
        self.cumulative = list(itertools.accumulate(len(self.by_tag[t]) ** tag_power for t in self.tag_list))
        self.batch_size = batch_size
        self.attempts = attempts
        self.rng = random.Random(seed)

    def batch(self) -> list[tuple[int, int]]:
        used_tags: set[str] = set()
        used_posts: set[int] = set()
        pairs: list[tuple[int, int]] = []
        failures = 0
        while len(pairs) < self.batch_size and failures < self.attempts:
            tag = self.rng.choices(self.tag_list, cum_weights=self.cumulative)[0]
            candidates = [p for p in self.by_tag[tag] if p not in used_posts and not used_tags.intersection(self.tags[p])]
            if tag in used_tags or len(candidates) < 2:
                failures += 1
                continue
            anchor, positive = self.rng.sample(candidates, 2)
            pairs.append((anchor, positive))
            used_posts.update((anchor, positive))
            used_tags.update(self.tags[anchor])
            used_tags.update(self.tags[positive])
            failures = 0
        return pairs

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        while True:
            yield self.batch()
