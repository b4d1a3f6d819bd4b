"""Micro-batching: searches that arrive within a few milliseconds of each other are encoded as one
batch and searched together, each answer going back to its own request.

Encoding dominates a search, and a batch of 32 posts costs the encoder far less than 32 batches
of one. One thread takes a request from a bounded queue, waits up to `max_wait` seconds for more
(up to `max_batch` queries), encodes every query of them in one call, then searches them in
groups that share k, de-duplication and filter. A request whose queries are refused (an empty
one) gets its own error; the others of the batch are answered.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import defaultdict
from concurrent.futures import Future
from concurrent.futures import TimeoutError as Unfinished
from dataclasses import dataclass, field

import numpy as np

from ..core.errors import HiclError
from ..index.filters import Filter
from ..index.hits import SearchResult


class Busy(HiclError):
    """The queue of waiting searches is full."""


@dataclass
class Search:
    """One request's searches, and where their answer goes."""

    queries: list[str]
    k: int
    dedupe: bool
    strip_hashtags: bool
    filter: Filter
    answer: Future = field(default_factory=Future)


class MicroBatcher:
    """The one thread that encodes and searches what requests hand it (see the module's docstring)."""

    def __init__(self, live, *, max_batch: int = 64, max_wait: float = 0.002, max_pending: int = 1024) -> None:
        self.live, self.max_batch, self.max_wait = live, max_batch, max_wait
        self.waiting: queue.Queue[Search | None] = queue.Queue(maxsize=max_pending)
        self.batches = 0
        self.thread = threading.Thread(target=self._serve, name="micro-batcher", daemon=True)
        self.thread.start()

    def search(self, request: Search, timeout: float = 60.0) -> list[SearchResult]:
        try:
            self.waiting.put(request, timeout=timeout)
        except queue.Full:
            raise Busy(f"the service has {self.waiting.maxsize} searches waiting; try again") from None
        try:
            return request.answer.result(timeout=timeout)
        except Unfinished:  # the builtin TimeoutError from Python 3.11 on
            raise Busy(f"the search did not finish within {timeout:g} s; try again") from None

    def close(self) -> None:
        self.waiting.put(None)
        self.thread.join(timeout=10)

    def _next_batch(self) -> list[Search] | None:
        first = self.waiting.get()
        if first is None:
            return None
        batch, queries = [first], len(first.queries)
        deadline = time.perf_counter() + self.max_wait
        while queries < self.max_batch:
            left = deadline - time.perf_counter()
            try:
                more = self.waiting.get(timeout=left) if left > 0 else self.waiting.get_nowait()
            except queue.Empty:
                break
            if more is None:
                self.waiting.put(None)  # stop after this batch
                break
            batch.append(more)
            queries += len(more.queries)
        return batch

    def _serve(self) -> None:
        while (batch := self._next_batch()) is not None:
            try:
                self._answer(batch)
            except Exception as exc:  # noqa: BLE001 - every waiting request must hear of it
                for request in batch:
                    if not request.answer.done():
                        request.answer.set_exception(exc)

    def _answer(self, batch: list[Search]) -> None:
        self.batches += 1
        with self.live.current() as retriever:
            accepted, texts = [], []
            for request in batch:
                try:
                    texts += retriever.query_texts(request.queries, request.strip_hashtags)
                    accepted.append(request)
                except HiclError as exc:
                    request.answer.set_exception(exc)
            if not accepted:
                return
            vectors = retriever.encode_queries(texts)
            rows, start = {}, 0
            for request in accepted:
                rows[id(request)] = np.arange(start, start + len(request.queries))
                start += len(request.queries)
            groups: dict[tuple, list[Search]] = defaultdict(list)
            for request in accepted:
                groups[(request.k, request.dedupe, request.filter)].append(request)
            for (k, dedupe, where), requests in groups.items():
                chosen = np.concatenate([rows[id(request)] for request in requests])
                queries = [query for request in requests for query in request.queries]
                try:
                    hits = retriever.search_vectors(vectors[chosen], k, queries=queries, dedupe=dedupe, filter=where)
                except HiclError as exc:
                    for request in requests:
                        request.answer.set_exception(exc)
                    continue
                position = 0
                for request in requests:
                    count = len(request.queries)
                    request.answer.set_result([SearchResult(query=q, hits=h) for q, h in
                                               zip(request.queries, hits[position : position + count])])
                    position += count
