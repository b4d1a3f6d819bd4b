"""The training checkpoint of `train-encoder`: everything a resumed run needs to continue exactly where it stopped."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.atomic import replacing


@dataclass
class Checkpoint:
    step: int
    recipe: dict[str, Any]
    """The settings that must not change between a run and its resumption (`TrainConfig.recipe`)."""
    digest: str
    """Of the training posts: a resumption must read the same ones."""
    model: dict[str, Any]
    optimizer: dict[str, Any]
    schedule: dict[str, Any]
    sampler: tuple
    """The states of the pair sampler's, the hashtag dropping's and the negatives' `random.Random`."""
    noise: tuple
    negatives: tuple
    torch: Any
    """torch's CPU random state, and CUDA's (None on a CPU)."""
    cuda: Any
    log: list[dict[str, Any]]
    seconds: float

    def save(self, path: Path) -> None:
        """Replace the checkpoint at `path` whole (a plain dict of tensors and lists, read with weights_only)."""
        import torch

        with replacing(path) as tmp:
            torch.save({field.name: getattr(self, field.name) for field in dataclasses.fields(self)}, tmp)

    @classmethod
    def load(cls, path: Path, device: Any) -> Checkpoint:
        import torch

        saved = torch.load(path, weights_only=True, map_location=device)
        for name in ("sampler", "noise", "negatives"):  # saved tuples may load as lists
            version, internal, gauss = saved[name]
            saved[name] = (version, tuple(internal), gauss)
        return cls(**saved)
