"""Hashtag retrieval metrics on hand-made rankings."""

import pytest

from hicl_retrieval.learning.metrics import score_rankings, shares_hashtag


def test_shares_hashtag():
    assert shares_hashtag(["#flood", "#yyc"], ["#yyc"])
    assert not shares_hashtag(["#flood"], ["#fire", "#yyc"])
    assert not shares_hashtag([], ["#fire"])


def test_scores_by_hand():
    rankings = [
        [True, False, True],          # hit@1, first hit at rank 1, 2 of k
        [False, False, True, False],  # first hit at rank 3, 1 of k
        [False, False, False],        # no hit
        [],                           # nothing retrieved
    ]
    scores = score_rankings(rankings, k=4)
    assert scores.queries == 4 and scores.k == 4
    assert scores.hit_at_1 == pytest.approx(1 / 4)
    assert scores.hit_at_k == pytest.approx(2 / 4)
    assert scores.precision_at_k == pytest.approx((2 / 4 + 1 / 4) / 4)
    assert scores.mrr == pytest.approx((1 + 1 / 3) / 4)
    assert scores.to_dict()["hit@4"] == pytest.approx(0.5)


def test_hits_past_k_do_not_count():
    scores = score_rankings([[False, False, True]], k=2)
    assert (scores.hit_at_k, scores.precision_at_k, scores.mrr) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        score_rankings([])
