"""Hashtag vocabulary, pair batches without false negatives, and hashtag noise."""

import random

import pytest

from hicl_retrieval import HiclError
from hicl_retrieval.core.text import drop_hashtags, extract_hashtags, strip_hashtags
from hicl_retrieval.learning.pairs import PairBatches, TagVocabulary


def random_posts(count, seed=0):
    rng = random.Random(seed)
    tags = [f"#t{i}" for i in range(60)]
    posts = []
    for _ in range(count):
        chosen = rng.sample(tags, rng.choice([1, 1, 2, 3]))
        posts.append(chosen + ["#semeval"])  # a dataset marker on every post
    return posts


def test_vocabulary_drops_rare_and_marker_tags():
    posts = random_posts(2000) + [["#once"]]
    vocabulary = TagVocabulary.build(posts, min_count=2, max_share=0.2)
    assert "#semeval" not in vocabulary.tags and vocabulary.too_common == ["#semeval"]
    assert "#once" not in vocabulary.tags and vocabulary.too_rare == 1
    assert len(vocabulary.tags) == 60
    assert vocabulary.eligible(["#t1", "#semeval", "#once"]) == ["#t1"]
    with pytest.raises(HiclError, match="at least 2"):
        TagVocabulary.build(posts, min_count=1)


def test_batches_never_share_a_hashtag_between_pairs():
    posts = random_posts(3000)
    vocabulary = TagVocabulary.build(posts, min_count=2, max_share=0.2)
    sampler = PairBatches(posts, vocabulary, batch_size=16, seed=1)
    sizes = []
    for _, pairs in zip(range(300), sampler):
        sizes.append(len(pairs))
        seen_tags, seen_posts = set(), set()
        for anchor, positive in pairs:
            a, p = set(vocabulary.eligible(posts[anchor])), set(vocabulary.eligible(posts[positive]))
            assert anchor != positive and a & p  # a positive pair shares a tag
            assert not (a | p) & seen_tags  # ... that no other pair of the batch carries
            assert not {anchor, positive} & seen_posts
            seen_tags |= a | p
            seen_posts |= {anchor, positive}
    assert min(sizes) >= 8 and sum(sizes) / len(sizes) > 12


def test_batches_are_reproducible():
    posts = random_posts(500)
    vocabulary = TagVocabulary.build(posts, max_share=0.2)
    first = PairBatches(posts, vocabulary, batch_size=8, seed=7)
    second = PairBatches(posts, vocabulary, batch_size=8, seed=7)
    assert [first.batch() for _ in range(5)] == [second.batch() for _ in range(5)]


def test_tag_power_shifts_draws_from_frequent_to_specific_tags():
    posts = [["#big"]] * 90 + [[f"#small{i % 5}"] for i in range(10)]  # one tag of 90 posts, five of 2
    vocabulary = TagVocabulary.build(posts, max_share=1.0)

    def share_of_big(power):
        sampler = PairBatches(posts, vocabulary, batch_size=1, seed=0, tag_power=power)
        draws = [sampler.batch()[0][0] for _ in range(3000)]
        return sum(post < 90 for post in draws) / len(draws)

    assert abs(share_of_big(1.0) - 90 / 100) < 0.03
    assert abs(share_of_big(0.0) - 1 / 6) < 0.03
    assert abs(share_of_big(0.5) - 90**0.5 / (90**0.5 + 5 * 2**0.5)) < 0.03


def test_nothing_to_pair_is_an_error():
    with pytest.raises(HiclError, match="nothing to pair"):
        PairBatches([["#a"], ["#b"]], TagVocabulary(frozenset({"#a", "#b"}), {}, 0, []), batch_size=4)


def test_hashtag_noise_respects_its_probability():
    text = "Flood waters rising #yycflood near the river #alberta"
    rng = random.Random(0)
    trials = 20000
    kept = [extract_hashtags(drop_hashtags(text, 0.3, rng)) for _ in range(trials)]
    for tag in ("#yycflood", "#alberta"):
        rate = sum(tag not in tags for tags in kept) / trials
        assert abs(rate - 0.3) < 0.015
    both = sum(len(tags) == 0 for tags in kept) / trials
    assert abs(both - 0.09) < 0.01  # independent removals
    assert drop_hashtags(text, 0.0) == text
    assert drop_hashtags(text, 1.0) == strip_hashtags(text) == "Flood waters rising near the river"
