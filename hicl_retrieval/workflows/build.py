"""Build an index directory from corpus files: read, encode, write a segment, train FAISS, commit (in this
process; sharded_build.py builds in parallel)."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm import tqdm

from ..core import native
from ..core.config import BuildConfig
from ..core.errors import HiclError
from ..core.files import check_name
from ..core.progress import advance
from ..corpus import Corpus, record_chunks
from ..corpus.shards import Reading, Shard, time_warnings
from ..encoding.encoder import Encoder
from ..encoding.pools import Encoding, open_encoding
from ..index.directory import IndexDir
from ..index.manifest import REJECTS
from ..index.planning import check_fits, check_trainable, free_disk
from ..index.writer import SegmentWriter, nothing_indexed
from .build_steps import BuildReport, build_state, commit_index, plan_for, split, trained_for, waited_for
from .sharded_build import PARALLEL_FROM, build_sharded, shards_for, worker_count

LOG = logging.getLogger(__name__)
BUILD_SEGMENT = "seg-0"
"""A build writes one segment under this name: a rerun of an interrupted build finds it there."""


def build_index(
    corpus: Sequence[str | Path],
    out: str | Path,
    config: BuildConfig,
    *,
    encoder: Encoder | None = None,
    announce: Callable[[str], None] = LOG.info,
) -> BuildReport:
    """Index every good post of the `corpus` files into the directory `out`.

    Input files are checked (existence, format, columns) before anything is written. Posts
    are read, encoded and stored `config.chunk_size` at a time, so memory stays bounded, into
    one segment through the `SegmentWriter`, which makes each chunk durable once committed. A
    build that stops anywhere (even ``kill -9``) resumes when run again with the same inputs
    and settings: the files are cut back to the last committed chunk and reading resumes after
    the last record it covered, so no post is lost or stored twice. The FAISS index is trained
    and the segment sealed at the end; the manifest is written last.

    Before encoding, the index type is resolved for the corpus's estimated size and its RAM
    and disk needs are passed to `announce`; a build that would not fit `config.max_memory`
    or the free disk is refused. At the end the type is resolved again for the exact count.

    The encoder runs where `config.encoding` says (device, precision, batches), or in a pool of
    Ray actors with `config.ray`; either way chunks are written in order by this process, so the
    index and its resumption are the same. `encoder`, if given, is used in this process.

    With more than one worker (`config.workers`, by default one a core) and a corpus of more than
    one shard, the build runs in parallel instead (sharded_build.py): a segment a shard, written
    by worker processes (or Ray actors with `config.ray`), to the same index.
    """
    started = time.perf_counter()
    check_name(out, "index folder", "choose a name in UTF-8")  # DuckDB and FAISS open only UTF-8 paths
    posts_in = Corpus(corpus, config.reader)
    if all(file.path.stat().st_size == 0 for file in posts_in.files):
        raise HiclError(nothing_indexed(0, Counter()))
    if posts_in.skipped_summary():
        announce(posts_in.skipped_summary())
    native.set_threads(config.threads)
    tick = time.perf_counter()
    encoding = open_encoding(config.encoder, config.encoding, config.ray, encoder=encoder)
    try:
        return _build(posts_in, Path(out), config, encoding, started, time.perf_counter() - tick, announce, encoder)
    finally:
        encoding.close()


def _build(posts_in: Corpus, out: Path, config: BuildConfig, encoder: Encoding, started: float,
           load_seconds: float, announce: Callable[[str], None], given: Encoder | None) -> BuildReport:
    estimated = posts_in.estimated_records()
    plan = plan_for(config.faiss_factory, estimated, encoder, config)
    announce(f"plan: {plan.describe()}")
    check_fits(plan, max_memory=config.max_memory, free_disk=free_disk(Path(out)))
    check_trainable(plan.factory, estimated, about=True)  # surely too few posts: refused before any encoding
    folder_existed = Path(out).is_dir()
    directory, resuming = IndexDir.for_build(out, build_state(posts_in, encoder, config), overwrite=config.overwrite)
    # an encoder object the caller made runs in worker processes only when asked (they must unpickle it), and so
    # does a small corpus: starting the workers, a model each, would cost more than they save
    workers = config.workers or (None if given is None and estimated >= PARALLEL_FROM else 1)
    wanted = len(encoder.workers) if config.ray else worker_count(workers, encoder.where.startswith("cpu"))
    shards = shards_for(directory, posts_in, wanted, resuming, config.shard_bytes)
    if shards is not None:  # a parallel build; with Ray, its workers read the shards where they run
        workers = min(wanted, len(shards))
        announce(f"{len(shards)} shards, {workers} workers")
        encoder.close()  # the Ray actors that told the encoder's shape make way for the build's
        return build_sharded(directory, shards, workers, config, encoder, given, load_seconds=load_seconds,
                             resumed=resuming, seconds=lambda: time.perf_counter() - started,
                             estimated=estimated, folder_existed=folder_existed)
    with SegmentWriter(directory, BUILD_SEGMENT, dim=encoder.dim, first_id=0,
                       hashtag_rule=config.hashtag_rule) as writer:
        last = writer.last
        stats = json.loads(last.stats) if last else {}
        report = BuildReport.from_stats(stats) if last else BuildReport()
        reading = Reading.resumed(Shard(tuple(posts_in.files)), stats)  # the whole corpus, one file after another
        report.index, report.load_seconds, report.resumed = directory.path, load_seconds, resuming
        report.encoded_on = encoder.where
        earlier_seconds = report.seconds
        if resuming:
            LOG.info("resuming %s after %d records (%d posts)", directory.path, last.records if last else 0,
                     writer.next_id)
        with tqdm(desc="reading and encoding", unit=" records", initial=last.records if last else 0,
                  total=max(estimated, 1), disable=not config.progress) as bar:
            records = reading.records(config.reader)
            chunks = () if writer.finished else (split(chunk) for chunk in record_chunks(records, config.chunk_size))
            encoded = encoder.encoded(chunks, lambda chunk: [post.text for post in chunk[1]], progress=bar)
            for (chunk, posts, rejects), vectors in waited_for(encoded, report):
                report.rejected.update(reject.reason for reject in rejects)
                for post in posts:
                    report.notes.update(post.notes)
                reading.count(chunk, posts)
                report.read += len(chunk)
                advance(bar, len(chunk) - len(posts))
                report.seconds = earlier_seconds + time.perf_counter() - started
                writer.commit(posts, vectors, rejects, records=report.read,
                              stats=json.dumps({**report.as_dict(), **reading.stats()}))
            if not writer.finished:
                repeated = writer.repeated_post_ids()
                report.duplicates = len(repeated)
                writer.finish(repeated, records=report.read, stats=json.dumps({**report.as_dict(), **reading.stats()}))
        report.indexed = writer.store.count()
        report.repeated_texts = writer.store.repeated_texts()
        report.warnings = time_warnings([reading], config.reader.time_format)
        if report.indexed == 0:
            writer.close()
            message = nothing_indexed(report.read, report.rejected, directory.file(REJECTS))
            directory.discard(keep_folder=folder_existed)  # nothing worth resuming; a rerun starts clean
            raise HiclError(message)
        ids = writer.store.ids()
        plan, trained = trained_for(directory, writer.vectors(), ids, encoder, config)
        segment = writer.seal(trained, ids)
    commit_index(directory, [segment], ids, plan, trained, encoder, config, report,
                 lambda: earlier_seconds + time.perf_counter() - started)
    return report
