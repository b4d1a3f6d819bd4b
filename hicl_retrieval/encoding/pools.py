"""Where chunks of posts get encoded: in this process, or by a pool of Ray actors (ray_workers.py).

Both give the chunks back in the order they came with their vectors, so `build` and `add` write
them through the same `SegmentWriter` whichever encodes them: a Ray build writes the same index,
and resumes the same way, as a build in one process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol, TypeVar

import numpy as np

from ..core.config import DeviceConfig, EncoderConfig, RayConfig
from ..core.errors import HiclError
from ..core.prefetch import ahead
from .devices import check_batch_limits, check_index_dtype
from .encoder import Encoder

T = TypeVar("T")


class Encoding(Protocol):
    """An encoder as the build sees it: its settings, and chunks in, (chunk, vectors) out in order."""

    dim: int
    config: EncoderConfig
    revision: str | None
    model_bytes: int
    where: str
    """Where the encoding runs, for reports: a device, or a Ray pool with its workers' devices."""

    def encoded(self, items: Iterable[T], texts: Callable[[T], Sequence[str]], progress=None
                ) -> Iterator[tuple[T, np.ndarray]]: ...

    def close(self) -> None: ...


class LocalEncoding:
    """Chunks encoded by an `Encoder` in this process.

    With `prefetch` (default: on a GPU) three stages overlap: one thread reads and tokenises
    the chunk after next, another runs the model on the next one (waiting on the GPU frees the
    interpreter), and the caller writes this one. On a CPU the model uses every core, and the
    threads would only take them from it.
    """

    def __init__(self, encoder: Encoder, running: DeviceConfig, *, prefetch: bool | None = None) -> None:
        self.encoder, self.running = encoder, running
        self.prefetch = encoder.device.type != "cpu" if prefetch is None else prefetch
        self.dim, self.config, self.revision = encoder.dim, encoder.config, encoder.revision
        self.model_bytes, self.where = encoder.model_bytes, encoder.device_name

    def encoded(self, items, texts, progress=None):
        limits = {"batch_size": self.running.batch_size, "max_tokens": self.running.max_tokens_per_batch}
        if not self.prefetch:
            for item in items:
                yield item, self.encoder.encode(texts(item), progress=progress, **limits)
            return
        tokenized = ahead(((item, self.encoder.tokenize(texts(item))) for item in items), depth=2)
        encoded = ahead((item, self.encoder.encode(texts(item), tokens=tokens, progress=progress, **limits))
                        for item, tokens in tokenized)
        try:
            yield from encoded
        finally:  # the caller stopped early (an error): stop both threads
            encoded.close()
            tokenized.close()

    def close(self) -> None:
        pass


def open_encoding(
    config: EncoderConfig,
    running: DeviceConfig,
    ray: RayConfig | None = None,
    *,
    encoder: Encoder | None = None,
    index: str | None = None,
) -> Encoding:
    """The encoding for a build (`index` None: `running.dtype` chosen by device) or for adding to
    the index at `index` (its recorded precision, another one refused); in Ray actors if `ray`."""
    if index is not None:
        check_index_dtype(config.dtype, running.dtype, index)
    check_batch_limits(running.max_tokens_per_batch, running.batch_size, config.max_length)
    dtype = None if index is not None else running.dtype
    if ray is not None:
        try:
            from .ray_workers import RayEncoding
        except ImportError as exc:
            raise HiclError(f"--ray needs Ray ({exc}): pip install 'hicl-retrieval[ray]'") from None
        return RayEncoding(config, running, ray, dtype=dtype)
    encoder = encoder or Encoder(config, device=running.device, dtype=dtype, runtime=running.runtime)
    return LocalEncoding(encoder, running)
