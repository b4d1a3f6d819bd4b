"""The limits and settings of a service, checked where they are made like every other config."""

from __future__ import annotations

from dataclasses import dataclass

from ..core.bounds import COUNT, Bounds, check_fields, setting


@dataclass(frozen=True)
class ServiceConfig:
    """What one request may ask, how searches are batched, and who may write."""

    max_k: int = setting(1000, COUNT)
    max_queries: int = setting(256, COUNT)
    """Queries of one request at most."""
    max_hits: int = setting(10_000, COUNT)
    """Queries x k of one request at most: what one search may cost the requests queued behind it."""
    max_query_chars: int = setting(10_000, COUNT)
    """Characters of one query at most (the encoder reads at most its max_length tokens of it)."""
    max_body_bytes: int = setting(1 << 20, COUNT)
    token: str | None = None
    """A bearer token every request but /health and the page must carry; None: no token."""
    max_batch: int = setting(64, COUNT)
    """Queries encoded together at most (batching.py); 1: every request alone."""
    max_wait_ms: float = setting(0.0, Bounds(low=0, high=1000))
    """How long the first search of a batch waits for others; 0: a batch is what queued while the last one was
    encoded, and a search that finds the service idle starts at once."""
    max_pending: int = setting(1024, COUNT)
    """Searches waiting at most; past it a search is answered 503."""
    timeout_s: float = setting(60.0, Bounds(low=0, high=3600, open_low=True), option="timeout")
    """How long a search may wait and run; past it the request is answered 503 and its work dropped."""
    body_timeout_s: float = setting(10.0, Bounds(low=0, high=3600, open_low=True), option="body-timeout")
    """How long a request's body may take to arrive whole; past it the request is answered 408."""
    writable: bool = False
    """Whether POST /add and POST /delete change the index (else they answer 403)."""

    def __post_init__(self) -> None:
        check_fields(self)
        if self.token is not None and (not isinstance(self.token, str) or not self.token.strip()):
            from ..core.errors import HiclError

            raise HiclError("the token must be a non-empty text")
