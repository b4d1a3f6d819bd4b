"""Micro-batching: searches that arrive within a few milliseconds of each other are encoded as one
batch and searched together, each answer going back to its own request.

Encoding dominates a search, and a batch of 32 posts costs the encoder far less than 32 batches
of one. One thread takes a request from a bounded queue, waits up to `max_wait` seconds for more
(up to `max_batch` queries), encodes every query of them in one call, then searches them in
groups that share k, de-duplication and filter.

One request never fails another: a request whose queries are refused gets its own error, and
when a batch fails for a reason no check foresaw, its requests are answered again one at a time,
so only the request that causes the failure hears of it. A request cancelled by its requester
(who timed out or left) is dropped before any work is done for it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import defaultdict
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from ..core.errors import HiclError, IndexDamaged
from ..index.filters import Filter
from ..index.hits import SearchResult

LOG = logging.getLogger(__name__)


class Busy(HiclError):
    """The service cannot take or finish a search now (the queue is full, or the search ran out of time)."""


@dataclass
class Search:
    """One request's searches, and where their answer goes."""

    queries: list[str]
    k: int
    dedupe: bool
    strip_hashtags: bool
    filter: Filter
    answer: Future = field(default_factory=Future)

    def cancel(self) -> None:
        """Drop the search: its requester no longer waits for it."""
        self.answer.cancel()

    def start(self) -> bool:
        """Whether the search is still wanted; from now on it can no longer be cancelled."""
        return self.answer.set_running_or_notify_cancel()


class MicroBatcher:
    """The one thread that encodes and searches what requests hand it (see the module's docstring)."""

    def __init__(self, live, *, max_batch: int = 64, max_wait: float = 0.002, max_pending: int = 1024) -> None:
        self.live, self.max_batch, self.max_wait = live, max_batch, max_wait
        self.waiting: queue.Queue[Search | None] = queue.Queue(maxsize=max_pending)
        self.batches = 0
        self.thread = threading.Thread(target=self._serve, name="micro-batcher", daemon=True)
        self.thread.start()

    def submit(self, request: Search) -> Future:
        """Queue `request`; its answer (a list of `SearchResult`) comes in the future returned."""
        try:
            self.waiting.put_nowait(request)
        except queue.Full:
            raise Busy(f"the service has {self.waiting.maxsize} searches waiting; try again") from None
        return request.answer

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
            wanted = [request for request in batch if request.start()]
            if not wanted:
                continue
            self.batches += 1
            try:
                with self.live.current() as retriever:
                    self._answer_apart(retriever, wanted)
            except Exception as exc:  # noqa: BLE001 - the index could not be opened: every request hears of it
                for request in wanted:
                    if not request.answer.done():
                        request.answer.set_exception(exc)

    def _answer_apart(self, retriever, batch: list[Search]) -> None:
        """Answer `batch` together; if that fails unforeseen, each request alone, so the failure stays with its cause."""
        try:
            self._answer(retriever, batch)
            return
        except IndexDamaged:
            raise  # the index's own problem: every request of the batch meets it
        except Exception:  # noqa: BLE001
            if len(batch) == 1:
                raise
            LOG.warning("a batch of %d searches failed; answering them one at a time", len(batch), exc_info=True)
        for request in batch:
            if request.answer.done():
                continue
            try:
                self._answer(retriever, [request])
            except Exception as exc:  # noqa: BLE001 - it goes to the request that caused it
                request.answer.set_exception(exc)

    def _answer(self, retriever, batch: list[Search]) -> None:
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
            except IndexDamaged:
                raise
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
