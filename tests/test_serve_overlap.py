"""The service overlaps its work: a batch is encoded while the one before is searched, and versions of a changing
index are opened once and closed only when their last reader is done, with no lock held across a search."""

import threading

import numpy as np
import pytest
from helpers import built_index, topical_rows, write_lines

from hicl_retrieval import Retriever, add_posts

pytest.importorskip("fastapi", reason="install the [serve] extra: pip install 'hicl-retrieval[serve]'")
from hicl_retrieval.index.filters import Filter  # noqa: E402
from hicl_retrieval.service.batching import MicroBatcher, Search  # noqa: E402
from hicl_retrieval.service.live import LiveIndex  # noqa: E402


@pytest.fixture
def live(tmp_path, tiny_encoder):
    index = built_index(tmp_path, tiny_encoder)
    live = LiveIndex(Retriever(index, encoder=tiny_encoder), None)
    yield live
    live.retriever.close()


def add_some(live: LiveIndex, tmp_path, first_id: int) -> None:
    write_lines(tmp_path / f"more-{first_id}.jsonl", topical_rows(20, first_id=first_id))
    add_posts(live.retriever.directory.path, [tmp_path / f"more-{first_id}.jsonl"], encoder=live.encoder,
              progress=False)


def test_the_next_batch_is_encoded_while_one_is_searched(live):
    searching, release, order = threading.Event(), threading.Event(), []
    retriever = live.retriever
    encode, search = retriever.encode_queries, retriever.search_vectors

    def slow_search(vectors, k, **options):
        order.append(("search starts", options["queries"][0]))
        searching.set()
        assert release.wait(10)
        order.append(("search ends", options["queries"][0]))
        return search(vectors, k, **options)

    def noted_encode(texts):
        order.append(("encoded", texts[0]))
        return encode(texts)

    retriever.search_vectors, retriever.encode_queries = slow_search, noted_encode
    batcher = MicroBatcher(live, max_batch=1, max_wait=0)
    try:
        first = batcher.submit(Search(["river flooding"], 3, True, False, Filter()))
        assert searching.wait(10)
        second = batcher.submit(Search(["phone launch"], 3, True, False, Filter()))
        for _ in range(200):  # the second batch is encoded while the first search still waits
            if ("encoded", "phone launch") in order:
                break
            threading.Event().wait(0.01)
        assert ("encoded", "phone launch") in order and ("search ends", "river flooding") not in order
        release.set()
        assert first.result(10)[0].hits and second.result(10)[0].hits
    finally:
        release.set()
        batcher.close()
    assert order.index(("search ends", "river flooding")) < order.index(("search starts", "phone launch"))


def test_a_new_version_opens_while_an_old_one_is_read_and_the_old_closes_after_its_last_reader(live, tmp_path):
    with live.current() as old:
        before = old.search("river flooding downtown", k=3)
        add_some(live, tmp_path, 5000)
        with live.current() as new:  # no lock of the old version's reader stands in the way
            assert new is not old and len(new) == len(old) + 20
        assert old.search("river flooding downtown", k=3)[0].hits == before[0].hits  # still open, still whole
    with pytest.raises(Exception):
        old.store.con.execute("select 1")  # closed by its last reader
    with live.current() as again:
        assert again is new  # opened once per version


def test_concurrent_readers_over_a_changing_index_each_answer_from_one_whole_version(live, tmp_path):
    sizes, problems, stop = set(), [], threading.Event()
    known = {len(live.retriever)}

    def reader():
        while not stop.is_set():
            try:
                with live.current() as retriever:
                    hits = retriever.search("river flooding downtown", k=5)[0].hits
                    ids = retriever.search_vectors(np.zeros((1, retriever.manifest.dim), np.float32) + 0.1, 5)
                    assert hits and len(ids[0]) == 5
                    sizes.add(len(retriever))
            except Exception as exc:  # noqa: BLE001 - collected and reported by the test
                problems.append(repr(exc))

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for thread in threads:
        thread.start()
    for step in range(3):
        add_some(live, tmp_path, 6000 + 100 * step)
        known.add(known_size := max(known) + 20)
        for _ in range(300):
            if known_size in sizes:
                break
            threading.Event().wait(0.01)
    stop.set()
    for thread in threads:
        thread.join(10)
    assert not problems
    assert sizes <= known and max(known) in sizes
