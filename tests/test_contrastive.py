"""The contrastive loss, and a few training steps on a tiny encoder lowering it."""

import random

import pytest
import torch
from helpers import TOPICS

from hicl_retrieval.core.text import drop_hashtags, extract_hashtags
from hicl_retrieval.encoding.encoder import Encoder
from hicl_retrieval.learning.contrastive import info_nce
from hicl_retrieval.learning.pairs import PairBatches, TagVocabulary


def test_info_nce_on_hand_made_vectors():
    eye = torch.eye(4)
    perfect = info_nce(eye, eye, temperature=0.05)
    assert perfect.item() < 1e-6
    shuffled = info_nce(eye, eye[[1, 0, 3, 2]], temperature=0.05)
    assert shuffled.item() > 10
    uniform = info_nce(torch.ones(4, 2) / 2**0.5, torch.ones(4, 2) / 2**0.5, temperature=1.0)
    assert uniform.item() == pytest.approx(torch.log(torch.tensor(4.0)).item())
    with pytest.raises(ValueError, match="must be"):
        info_nce(eye, eye[:3])
    # extra negatives compete with the positives for the anchors only: with each anchor's twin
    # among them (temperature 1), anchor-to-candidates is log(2e + 6) - 1, the other way log(e + 3) - 1
    e = torch.exp(torch.tensor(1.0))
    expected = (torch.log(2 * e + 6) - 1 + torch.log(e + 3) - 1) / 2
    assert info_nce(eye, eye, 1.0, negatives=eye.clone()).item() == pytest.approx(expected.item(), rel=1e-5)
    assert info_nce(eye, eye, 0.05, negatives=torch.zeros(3, 4)).item() < 1e-6  # unrelated: no effect

def test_a_few_steps_lower_the_loss(tiny_encoder):
    encoder = Encoder(tiny_encoder.config)  # its own copy of the weights, trained here
    rng = random.Random(0)
    texts = [f"{TOPICS[i % 5]} note {rng.randint(0, 99)} #topic{i % 5} #sub{i % 15}" for i in range(300)]
    posts = [extract_hashtags(t) for t in texts]
    vocabulary = TagVocabulary.build(posts, min_count=2, max_share=0.1)  # the #topic tags are too common
    assert vocabulary.too_common == [f"#topic{i}" for i in range(5)]
    sampler = PairBatches(posts, vocabulary, batch_size=8, seed=0)
    batches = [sampler.batch() for _ in range(3)]

    def loss_of(pairs):
        anchors = encoder.embed([drop_hashtags(texts[a], 0.9, rng) for a, _ in pairs])
        positives = encoder.embed([drop_hashtags(texts[p], 0.5, rng) for _, p in pairs])
        return info_nce(anchors, positives, temperature=0.1)

    def measured():
        rng.seed(1)  # the same hashtag noise each time
        with torch.no_grad():
            return sum(loss_of(pairs).item() for pairs in batches)

    encoder.model.eval()  # no dropout in so small a model: the loss measures the weights alone
    optimizer = torch.optim.AdamW(encoder.model.parameters(), lr=3e-4)
    before = measured()
    for _ in range(10):
        for pairs in batches:
            optimizer.zero_grad()
            loss_of(pairs).backward()
            optimizer.step()
    after = measured()
    print("loss before", before, "after", after)
    assert after < 0.8 * before


def test_ignored_pairs_count_as_neither_negative_nor_positive():
    torch.manual_seed(0)
    anchors = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    positives = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    everything_else = ~torch.eye(4, dtype=torch.bool)
    assert info_nce(anchors, positives, ignore=everything_else).item() == 0.0  # only its own positive is left
    one = torch.zeros(4, 4, dtype=torch.bool)
    one[0, 1] = True
    masked = info_nce(anchors, positives, ignore=one)
    assert 0 < masked.item() < info_nce(anchors, positives).item()
