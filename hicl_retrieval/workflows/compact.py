"""Rewrite an index's segments: `compact` merges them without deleted rows (and converts format 1), `reindex`
rebuilds their FAISS parts as another index type. No re-encoding; readers see the old index or the new one."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from ..core.bounds import K_FACTOR, MEMORY, RECALL, check
from ..core.config import EncoderConfig
from ..core.errors import HiclError
from ..index.changes import generation, locked, remove_unnamed, switch, writing
from ..index.checksums import damaged_ranges
from ..index.directory import IndexDir
from ..index.faiss_index import default_k_factor, effective_factory, trained_index
from ..index.manifest import MANIFEST, REJECTS, WRITE_LOCK, Manifest
from ..index.planning import check_fits, check_trainable, factory_for, free_disk, plan_index
from ..index.segments import SegmentVectors
from ..index.tuning import tuned_manifest
from ..index.writer import SegmentWriter, new_segment_name, write_part, write_trained

LOG = logging.getLogger(__name__)


def compact(path: str | Path, *, target_recall: float | None = None) -> Manifest:
    """Merge the segments of the index at `path` into one without its deleted posts, re-training the FAISS index.

    Post ids are kept. An index of format 1 (one post store that every change rewrote) is
    converted to a segment the same way, without re-encoding.
    """
    if target_recall is not None:
        check("--target-recall", target_recall, RECALL)
    if IndexDir(path).format_version() == 1:
        return _convert_format_1(path, target_recall)
    with writing(path) as (directory, manifest):
        directory.check_vectors(manifest)
        if manifest.count:  # none left: `_merged` says so
            check_trainable(manifest.faiss_factory, manifest.count, advice=_keeps_type(directory))
        with SegmentWriter(directory, new_segment_name(), dim=manifest.dim, first_id=manifest.next_id,
                           hashtag_rule=manifest.hashtag_rule, rejects_start=manifest.files.get(REJECTS, 0)) as writer:
            writer.copy([directory.file(s.store_file) for s in manifest.segments], directory.deleted_ids(manifest),
                        directory.open_vectors(manifest))
            merged = _merged(directory, writer, manifest, target_recall)
        return switch(directory, merged)


def _merged(directory: IndexDir, writer: SegmentWriter, manifest: Manifest, target_recall: float | None) -> Manifest:
    """`manifest` with the `writer`'s filled segment as its only one, under a newly trained and tuned FAISS index."""
    ids = writer.store.ids()
    if not len(ids):
        raise HiclError(f"every post of {directory.path} is deleted; build it again instead of compacting it")
    trained = trained_index(writer.vectors(), ids, manifest.faiss_factory, manifest.dim,
                            advice=_keeps_type(directory))
    trained_file = write_trained(directory, trained)
    segment = writer.seal(trained, ids)
    merged = dataclasses.replace(manifest, segments=(), deletions=(), trained_file=trained_file, count=0,
                                 search_params={}, tuning={})  # `tuned_manifest` measures them again
    merged = merged.with_segment(segment)
    target = target_recall if target_recall is not None else manifest.tuning.get("target", 0.95)
    return tuned_manifest(merged, directory.open_faiss(merged, mmap=False), directory.open_vectors(merged), ids, target)


def _keeps_type(directory: IndexDir) -> str:
    """The advice for a compaction whose index type its posts cannot train (see `check_trainable`)."""
    return (f"compact keeps the index type, so reindex it first: "
            f"hicl-retrieval reindex {directory.path} --index {{fitting}}")


def _convert_format_1(path: str | Path, target_recall: float | None) -> Manifest:
    """Turn a format-1 index (vectors.f16 with a row per id, posts.duckdb, faiss.index) into one segment."""
    with locked(path, IndexDir.format_version) as directory:
        data = directory.manifest_data()
        if data.get("format_version") != 1:  # converted meanwhile
            return directory.read_manifest()
        try:
            vectors_file, store_file, rows = data["vectors_file"], data["store_file"], int(data["vector_rows"])
            manifest = Manifest(
                encoder=EncoderConfig.from_dict(data["encoder"], where="manifest encoder"), dim=int(data["dim"]),
                faiss_factory=data["faiss_factory"], count=0, next_id=rows, model_revision=data.get("model_revision"),
                k_factor=int(data.get("k_factor", 1)), tuning=data.get("tuning", {}),
                hashtag_rule=data.get("hashtag_rule", "hicl"), stats=data.get("stats", {}),
                files={REJECTS: data["files"][REJECTS]} if REJECTS in data.get("files", {}) else {},
                checksums={REJECTS: data["checksums"][REJECTS]} if REJECTS in data.get("checksums", {}) else {},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise HiclError(f"{directory.file(MANIFEST)} is damaged ({exc}); rebuild the index") from None
        if data.get("checksums", {}).get(vectors_file) and damaged_ranges(
                directory.file(vectors_file), data["files"][vectors_file], data["checksums"][vectors_file],
                data.get("checksum_block", 1 << 26)):
            raise HiclError(f"{directory.file(vectors_file)} is damaged; build the index again")
        remove_unnamed(directory, {MANIFEST, WRITE_LOCK, REJECTS, vectors_file, store_file, data.get("faiss_file", "")})
        old = SegmentVectors([(np.arange(rows, dtype=np.int64), directory.vectors_file(vectors_file, rows, manifest.dim))],
                             manifest.dim)
        LOG.info("converting %s from format 1", directory.path)
        with SegmentWriter(directory, new_segment_name(), dim=manifest.dim, first_id=rows,
                           hashtag_rule=manifest.hashtag_rule,
                           rejects_start=manifest.files.get(REJECTS, 0)) as writer:
            writer.copy([directory.file(store_file)], np.zeros(0, dtype=np.int64), old)
            converted = _merged(directory, writer, manifest, target_recall)
        return switch(directory, converted)


def reindex(
    path: str | Path, spec: str, *, k_factor: int | None = None, max_memory: int | None = None,
    target_recall: float = 0.95,
) -> Manifest:
    """Rebuild the FAISS parts of the index at `path` as another type (`spec` as for build), from the stored vectors.

    No re-encoding. The new parts go to new files and the manifest switches to them
    atomically, so a reader opening the index meanwhile gets the old index or the new one, whole;
    the write lock keeps an add or delete from being undone by the switch.
    """
    check("--k-factor", k_factor, K_FACTOR)
    check("--target-recall", target_recall, RECALL)
    check("--max-memory", max_memory, MEMORY)
    with writing(path, except_faiss=True) as (directory, manifest):
        directory.check_vectors(manifest)
        working = 256 << 20  # no encoder here: buffers only
        factory = effective_factory(factory_for(spec, manifest.count, manifest.dim, max_memory, working=working))
        plan = plan_index(factory, manifest.count, manifest.dim, k_factor=default_k_factor(factory), working=working)
        check_fits(plan, max_memory=max_memory, free_disk=free_disk(directory.path))
        with directory.open_store(manifest) as store:
            ids = store.ids()
        vectors = directory.open_vectors(manifest)
        number = generation()
        trained = trained_index(vectors, ids, factory, manifest.dim)
        trained_file = write_trained(directory, trained, f"trained-{number}.faiss")
        segments = []
        for segment in manifest.segments:
            own = ids[(ids >= segment.first_id) & (ids <= segment.last_id)]
            faiss_file = f"{segment.name}-{number}.faiss"
            write_part(directory.file(faiss_file), trained, vectors, own)
            segments.append(dataclasses.replace(segment, faiss_file=faiss_file))
        manifest = dataclasses.replace(  # the old type's search parameters mean nothing to the new one
            manifest, faiss_factory=factory, k_factor=k_factor if k_factor is not None else plan.k_factor,
            segments=tuple(segments), trained_file=trained_file, search_params={}, tuning={},
        )
        manifest = tuned_manifest(manifest, directory.open_faiss(manifest, mmap=False), vectors, ids, target_recall)
        return switch(directory, manifest)
