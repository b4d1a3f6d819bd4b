"""The contrastive objective of hashtag-driven encoder training: symmetric InfoNCE over a batch."""

from __future__ import annotations


def info_nce(anchors, positives, temperature: float = 0.05, negatives=None, ignore=None):
    """Symmetric InfoNCE of unit vectors: each anchor must pick its own positive among the batch's.

    `anchors` and `positives` are (batch, dim) tensors; row i of each is a positive pair, every
    other row a negative (the pair sampler guarantees no two pairs share a hashtag). Optional
    `negatives` (n, dim) are extra candidates for the anchors only (posts without the batch's
    hashtags). `ignore`, a (batch, batch) boolean tensor, marks pairs (i, j != i) that are not
    negatives of each other (they share a hashtag): they count in neither direction. The loss is
    the mean of the anchor-to-candidates and positive-to-anchor cross-entropies.
    """
    import torch

    if anchors.shape != positives.shape or anchors.dim() != 2:
        raise ValueError(f"anchors {tuple(anchors.shape)} and positives {tuple(positives.shape)} must be (batch, dim)")
    logits = anchors @ positives.T / temperature
    if ignore is not None:
        logits = logits.masked_fill(ignore, float("-inf"))
    targets = torch.arange(len(anchors), device=anchors.device)
    forward = logits if negatives is None else torch.cat([logits, anchors @ negatives.T / temperature], dim=1)
    return (torch.nn.functional.cross_entropy(forward, targets) + torch.nn.functional.cross_entropy(logits.T, targets)) / 2
