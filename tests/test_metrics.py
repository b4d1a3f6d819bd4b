"""Hashtag retrieval metrics on hand-made rankings."""

import pytest

from hicl_retrieval.learning.metrics import hit_curve, score_rankings, shares_hashtag


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


def test_hit_curve_counts_each_query_from_its_first_hit_on():
    rankings = [[False, True], [True], [False, False, False, True], []]
    assert hit_curve(rankings, k=4) == [0.25, 0.5, 0.5, 0.75]
    assert hit_curve(rankings, k=4)[-1] == score_rankings(rankings, k=4).hit_at_k
    with pytest.raises(ValueError):
        hit_curve([])
