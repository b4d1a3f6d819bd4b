"""What segments keep beside their post store: rows by id for a search's hits, post-id hashes for an add's check;
both answer as the post store does, in every index state."""

import json

import numpy as np
from helpers import built_index, topical_rows, write_lines

from hicl_retrieval import Retriever, add_posts, compact, delete_posts
from hicl_retrieval.core.atomic import save_array
from hicl_retrieval.index.directory import IndexDir
from hicl_retrieval.index.manifest import MANIFEST
from hicl_retrieval.index.post_ids import PostIdHashes, bucket_starts, held_in_buckets, held_sorted, sorted_hashes
from hicl_retrieval.index.store import PostStore


def _same_rows(path) -> int:
    """Check that the row files give every id what the post store gives (deleted and dropped posts absent), and the
    post-id hashes every post id held, and no other, as the store alone says."""
    directory = IndexDir(path)
    manifest = directory.read_manifest()
    deleted = directory.deleted_ids(manifest)
    rows = directory.open_rows(manifest, deleted)
    asked = [str(number) for number in [*range(990, 1070), *range(1998, 2004), *range(4990, 5040), 6000]]
    with directory.open_store(manifest, deleted) as store, \
            PostStore.over([directory.file(s.store_file) for s in manifest.segments], deleted) as plain:
        ids = np.concatenate([directory.segment_ids(s) for s in manifest.segments] + [[-1, manifest.next_id + 3]])
        expected = store.fetch(ids)
        assert store.post_id_hashes is not None and plain.post_id_hashes is None
        held = plain.existing_post_ids(asked)
        assert store.existing_post_ids(asked) == held and len(held) == len(expected)
    assert rows is not None and rows.fetch(ids) == expected
    return len(expected)


def test_row_files_answer_as_the_post_store_through_add_delete_and_compact(tmp_path, tiny_encoder):
    index = built_index(tmp_path, tiny_encoder)  # a reused post id: a dropped post, a gap in the rows
    assert _same_rows(index) == 62
    more = tmp_path / "more.jsonl"
    write_lines(more, topical_rows(30, first_id=5000) + [{"id": "5003", "text": "again"},
                                                          {"id": "6000", "text": "no time, no author"}])
    add_posts(index, [more], encoder=tiny_encoder, progress=False)
    delete_posts(index, post_ids=["1004", "5007"])
    assert _same_rows(index) == 62 + 31 - 2
    compact(index)
    assert _same_rows(index) == 91


def test_an_index_sealed_before_row_files_answers_from_its_post_store(tmp_path, tiny_encoder):
    index = built_index(tmp_path, tiny_encoder)
    with Retriever(index, encoder=tiny_encoder) as retriever:
        assert retriever.rows is not retriever.store
        expected = retriever.search(["river flooding downtown", "election results"], k=8)
    data = json.loads((index / MANIFEST).read_text())
    for segment in data["segments"]:
        for name in (segment.pop("rows_file"), "seg-0.rows.offsets.npy"):
            data["files"].pop(name)
            data["checksums"].pop(name)
    (index / MANIFEST).write_text(json.dumps(data))
    with Retriever(index, encoder=tiny_encoder) as retriever:
        assert retriever.rows is retriever.store
        assert retriever.search(["river flooding downtown", "election results"], k=8) == expected


def test_an_index_sealed_before_post_id_buckets_checks_post_ids_in_its_whole_hashes(tmp_path, tiny_encoder):
    index = built_index(tmp_path, tiny_encoder)
    data = json.loads((index / MANIFEST).read_text())
    for segment in data["segments"]:
        name = segment.pop("post_id_buckets_file")
        data["files"].pop(name)
        data["checksums"].pop(name)
        (index / name).unlink()
    (index / MANIFEST).write_text(json.dumps(data))
    assert _same_rows(index) == 62
    more = tmp_path / "more.jsonl"
    write_lines(more, topical_rows(30, first_id=5000) + [{"id": "1003", "text": "held already"}])
    add_posts(index, [more], encoder=tiny_encoder, progress=False)  # a segment with buckets beside one without
    assert [bool(s.post_id_buckets_file) for s in IndexDir(index).read_manifest().segments] == [False, True]
    assert _same_rows(index) == 62 + 30


def test_post_id_buckets_find_what_a_search_of_all_the_hashes_finds(tmp_path):
    rng = np.random.default_rng(0)
    edges = np.array([np.iinfo(np.int64).min, -1, 0, 1, np.iinfo(np.int64).max], dtype=np.int64)
    for size in (1, 2, 9, 17, 1000, 70_000):
        part = np.unique(np.concatenate([rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max, size,
                                                      dtype=np.int64), edges[: size % 4]]))
        starts = bucket_starts(part)
        assert len(starts) - 1 >= 2 and starts[0] == 0 and starts[-1] == len(part) and (np.diff(starts) >= 0).all()
        asked = np.sort(np.concatenate([rng.choice(part, min(size, 300)), edges, part[-1:] + 1, part[:1] - 1,
                                        rng.integers(-(2**63), 2**63 - 1, 300, dtype=np.int64)]))
        want = np.isin(asked, part)
        assert (held_in_buckets(part, starts, asked) == want).all() and (held_sorted(part, asked) == want).all()
    post_ids = [f"p{i}" for i in range(5000)]
    save_array(tmp_path / "h.npy", sorted_hashes(post_ids))
    save_array(tmp_path / "b.npy", bucket_starts(sorted_hashes(post_ids)))
    asked = [f"p{i}" for i in range(4990, 5010)] + ["p1", "", "\ud800"]
    for buckets in (tmp_path / "b.npy", None):
        assert PostIdHashes([(tmp_path / "h.npy", buckets)]).maybe_held(asked) == asked[:10] + ["p1"]
