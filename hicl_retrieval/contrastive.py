"""The contrastive objective of hashtag-driven encoder training: symmetric InfoNCE over a batch."""

from __future__ import annotations


def info_nce(anchors, positives, temperature: float = 0.05):
    """Symmetric InfoNCE of unit vectors: each anchor must pick its own positive among the batch's.

    `anchors` and `positives` are (batch, dim) tensors; row i of each is a positive pair, every
    other row a negative (the pair sampler guarantees no two pairs share a hashtag). The loss is
    the mean of the anchor-to-positive and positive-to-anchor cross-entropies.
    """
    import torch

    if anchors.shape != positives.shape or anchors.dim() != 2:
        raise ValueError(f"anchors {tuple(anchors.shape)} and positives {tuple(positives.shape)} must be (batch, dim)")
    logits = anchors @ positives.T / temperature
    targets = torch.arange(len(anchors), device=anchors.device)
    return (torch.nn.functional.cross_entropy(logits, targets) + torch.nn.functional.cross_entropy(logits.T, targets)) / 2
