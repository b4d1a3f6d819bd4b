"""What segments keep beside their post store: rows by id for a search's hits, post-id hashes for an add's check;
both answer as the post store does, in every index state."""

import json

import numpy as np
from helpers import built_index, topical_rows, write_lines

from hicl_retrieval import Retriever, add_posts, compact, delete_posts
from hicl_retrieval.index.directory import IndexDir
from hicl_retrieval.index.manifest import MANIFEST
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
