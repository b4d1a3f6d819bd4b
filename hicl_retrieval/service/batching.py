"""Micro-batching: searches that queue while the service is busy are encoded as one batch and
searched together, each answer going back to its own request.

Encoding dominates a search, and a batch of 32 posts costs the encoder far less than 32 batches
of one. One thread takes a request from a bounded queue with those queued behind it (up to
`max_batch` queries; by default it waits for no more, since the next batch queues while it encodes)
and encodes every query of them in one call; a second thread searches
the encoded batch in groups that share k, de-duplication and filter, while the first encodes the
next batch (it runs at most one batch ahead).

One request never fails another: a request whose queries are refused gets its own error, and
when a batch fails for a reason no check foresaw, its requests are answered again one at a time,
so only the request that causes the failure hears of it. A request cancelled by its requester
(who timed out or left) is dropped: before any work is done for it when it still waits, else
before its search, and a search of many hits runs in pieces of about `PIECE_HITS` hits, each
begun only while its requester still waits (FAISS and the model cannot be stopped within a call).
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

PIECE_HITS = 1000
"""Hits (queries x k) searched in one call at most: what is left of a search whose requester leaves is one call.
Batches of single-post searches for ten hits each (the common case) are one call up to 100 queries."""


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
    left: threading.Event = field(default_factory=threading.Event)
    """Set when the requester no longer waits: work not yet begun for it is dropped."""

    def cancel(self) -> None:
        """Drop the search: its requester no longer waits for it."""
        self.left.set()
        self.answer.cancel()

    def start(self) -> bool:
        """Whether the search is still wanted; from now on it can no longer be cancelled."""
        return self.answer.set_running_or_notify_cancel()


@dataclass
class Encoded:
    """A batch's requests whose queries were accepted, and their query vectors, a request's rows after another's."""

    requests: list[Search]
    vectors: np.ndarray


class MicroBatcher:
    """The two threads that encode and search what requests hand them (see the module's docstring)."""

    def __init__(self, live, *, max_batch: int = 64, max_wait: float = 0.0, max_pending: int = 1024) -> None:
        self.live, self.max_batch, self.max_wait = live, max_batch, max_wait
        self.waiting: queue.Queue[Search | None] = queue.Queue(maxsize=max_pending)
        self.encoded: queue.Queue[Encoded | None] = queue.Queue(maxsize=1)
        self.batches = 0
        self.threads = [threading.Thread(target=self._encode_batches, name="micro-batcher", daemon=True),
                        threading.Thread(target=self._search_batches, name="searcher", daemon=True)]
        for thread in self.threads:
            thread.start()

    def submit(self, request: Search) -> Future:
        """Queue `request`; its answer (a list of `SearchResult`) comes in the future returned."""
        try:
            self.waiting.put_nowait(request)
        except queue.Full:
            raise Busy(f"the service has {self.waiting.maxsize} searches waiting; try again") from None
        return request.answer

    def close(self) -> None:
        self.waiting.put(None)
        for thread in self.threads:
            thread.join(timeout=10)

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

    def _encode_batches(self) -> None:
        while (batch := self._next_batch()) is not None:
            wanted = [request for request in batch if request.start()]
            if not wanted:
                continue
            self.batches += 1
            try:
                encoded = self._encode(wanted)
            except Exception as exc:  # noqa: BLE001 - unforeseen: it stays with the request that causes it
                self._fail_or_split(wanted, exc)
                continue
            if encoded is not None:
                self.encoded.put(encoded)
        self.encoded.put(None)

    def _search_batches(self) -> None:
        while (encoded := self.encoded.get()) is not None:
            try:
                with self.live.current() as retriever:
                    self._search(retriever, encoded)
            except Exception as exc:  # noqa: BLE001 - see _fail_or_split
                self._fail_or_split(encoded.requests, exc)

    def _fail_or_split(self, batch: list[Search], exc: Exception) -> None:
        """After `batch` failed with `exc`: the index's own damage (or a version that cannot be opened) answers every
        request with it; any other failure answers each request again alone, so it stays with its cause."""
        pending = [request for request in batch if not request.answer.done()]
        if isinstance(exc, IndexDamaged) or len(pending) == 1:
            for request in pending:
                request.answer.set_exception(exc)
            return
        LOG.warning("a batch of %d searches failed; answering them one at a time", len(pending), exc_info=exc)
        for request in pending:
            try:
                encoded = self._encode([request])
                if encoded is not None:
                    with self.live.current() as retriever:
                        self._search(retriever, encoded)
            except Exception as alone:  # noqa: BLE001 - it goes to the request that caused it
                if not request.answer.done():
                    request.answer.set_exception(alone)

    def _encode(self, batch: list[Search]) -> Encoded | None:
        """The batch's query vectors in one call of the encoder; a request whose queries are refused is answered with
        its error, and None comes back when none is left. No version of the index is held: queries are checked by
        the manifest's hashtag rule and encoded by the encoder, which every version shares."""
        retriever, accepted, texts = self.live.retriever, [], []
        for request in batch:
            if request.left.is_set():
                continue
            try:
                texts += retriever.query_texts(request.queries, request.strip_hashtags)
                accepted.append(request)
            except HiclError as exc:
                request.answer.set_exception(exc)
        return Encoded(accepted, retriever.encode_queries(texts)) if accepted else None

    def _search(self, retriever, encoded: Encoded) -> None:
        """Each group of requests that share k, de-duplication and filter searched together, in pieces of at most
        `PIECE_HITS` hits; a piece holds only queries whose requester still waits."""
        rows, start = {}, 0
        for request in encoded.requests:
            rows[id(request)] = range(start, start + len(request.queries))
            start += len(request.queries)
        groups: dict[tuple, list[Search]] = defaultdict(list)
        for request in encoded.requests:
            groups[(request.k, request.dedupe, request.filter)].append(request)
        for (k, dedupe, where), requests in groups.items():
            queries = [(request, row, query) for request in requests
                       for row, query in zip(rows[id(request)], request.queries)]
            found: dict[int, list] = defaultdict(list)
            step = max(1, PIECE_HITS // k)
            try:
                for first in range(0, len(queries), step):
                    piece = [entry for entry in queries[first : first + step] if not entry[0].left.is_set()]
                    if not piece:
                        continue
                    hits = retriever.search_vectors(encoded.vectors[[row for _, row, _ in piece]], k,
                                                    queries=[query for *_, query in piece], dedupe=dedupe,
                                                    filter=where)
                    for (request, _, _), found_hits in zip(piece, hits):
                        found[id(request)].append(found_hits)
            except IndexDamaged:
                raise
            except HiclError as exc:
                for request in requests:
                    request.answer.set_exception(exc)
                continue
            for request in requests:
                if not request.left.is_set():
                    request.answer.set_result([SearchResult(query=q, hits=h)
                                               for q, h in zip(request.queries, found[id(request)])])
