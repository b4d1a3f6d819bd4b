"""A build in parallel: the corpus cut into shards, each turned into one segment by a worker process.

A worker reads its shard, derives, encodes and writes it through its own `SegmentWriter` (its own
segment, id range and rejects file), so no post passes through the driver, which only hands out
shards, then finishes the index: post ids repeated across shards are dropped as a one-process
build drops them (the first in corpus order kept), the rejects are merged in corpus order, FAISS
is trained on a sample of every shard's vectors, each segment gets its part, and the manifest is
committed. Every step resumes: a shard's segment keeps its ledger, so a rerun of the same command
(after ``kill -9`` of the driver or of a worker) keeps the finished shards, continues the
unfinished ones where their last chunk ended, and redoes the finishing steps, which are idempotent.

`add_sharded` runs the same workers to add a large corpus to a finished index: a new segment a
shard, the post ids the index holds skipped as a one-process add skips them.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import logging
import multiprocessing
import queue
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..core import native
from ..core.atomic import synced, write_json
from ..core.config import BuildConfig
from ..core.errors import HiclError
from ..corpus import Corpus, CorpusFile, record_chunks
from ..corpus.shards import Reading, Shard, plan_shards, time_warnings
from ..encoding.encoder import Encoder
from ..encoding.pools import Encoding, LocalEncoding
from ..index.changes import remove_unnamed
from ..index.directory import IndexDir
from ..index.faiss_index import VectorIndex
from ..index.manifest import MANIFEST, REJECTS, Manifest, Segment
from ..index.segments import SegmentVectors
from ..index.store import PostStore
from ..index.writer import SegmentWriter, new_segment_name, nothing_indexed
from .build_steps import BUILD_TRAINED, BuildReport, commit_index, split, trained_for, waited_for

LOG = logging.getLogger(__name__)
SHARDS = "shards.json"
"""The shards a parallel build began with: a resumption keeps them, whatever its --workers."""
ID_STRIDE = 1 << 36
"""Shard n's posts get the ids n * ID_STRIDE, +1, ...: unique without knowing any shard's size."""
MIN_SHARD_BYTES = 1 << 20
MAX_SHARD_BYTES = 256 << 20
PARALLEL_FROM = 100_000
"""Below this many records (estimated) a build runs in one process unless workers are asked for: 20,000 API
tweets with a BERT of 1 layer took 8.5 s in one process, 12.6 s with two workers (each loading the model)."""
WORKER_TRIES = 3
"""How many times workers may die (the pool broken, its unfinished shards redone) before the build fails."""


def segment_of(number: int) -> str:
    """The segment of a build's shard `number`."""
    return f"seg-s{number:05d}"


def stores_of(directory: IndexDir, jobs: Sequence[ShardJob]) -> list[Path]:
    """The post stores of the shards' segments."""
    return [directory.file(f"{job.segment}.duckdb") for job in jobs]


def shard_writer(directory: IndexDir, job: ShardJob) -> SegmentWriter:
    """The writer of the job's segment: its own ids (from `job.first_id`) and rejects file."""
    return SegmentWriter(directory, job.segment, dim=job.dim, first_id=job.first_id,
                         hashtag_rule=job.config.hashtag_rule, rejects=job.rejects)


def shard_bytes(files: Sequence[CorpusFile], workers: int) -> int:
    """About four shards a worker, within bounds: small enough to share out, large enough to pay."""
    total = sum(file.path.stat().st_size for file in files)
    return int(min(MAX_SHARD_BYTES, max(MIN_SHARD_BYTES, total // (4 * workers))))


def shards_for(directory: IndexDir, posts_in: Corpus, workers: int, resuming: bool,
               size: int | None = None) -> list[Shard] | None:
    """The shards of a parallel build, or None where the build runs in this process: those an interrupted
    parallel build recorded (whatever `workers` is now), else, for more than one worker, the corpus cut
    into shards of about `size` bytes (default: `shard_bytes`), recorded when there are several."""
    recorded = directory.file(SHARDS)
    if resuming:
        if not recorded.exists():
            return None  # a one-process build is resumed as one
        files = {str(file.path.resolve()): file for file in posts_in.files}  # as the build state names them
        return [Shard(tuple(files[path] for path in row["paths"]), row["start"], row["end"], row["first_line"])
                for row in json.loads(recorded.read_text(encoding="utf-8"))]
    if workers < 2:
        return None
    shards = plan_shards(posts_in.files, size or shard_bytes(posts_in.files, workers), posts_in.config)
    if len(shards) < 2:
        return None
    write_json(recorded, [shard.to_dict() for shard in shards])
    return shards


@dataclass(frozen=True)
class ShardJob:
    """One shard to turn into the segment `segment` of the index at `index`, its posts numbered from `first_id`."""

    index: Path
    number: int
    shard: Shard
    dim: int
    config: BuildConfig
    segment: str
    first_id: int
    adding: bool = False
    """The posts join a finished index: those whose post id it holds (or an earlier post of the shard) are
    skipped, as `add` skips them, not stored."""

    @property
    def rejects(self) -> str:
        return f"{self.segment}.rejects.jsonl"


def build_jobs(directory: IndexDir, shards: Sequence[Shard], dim: int, config: BuildConfig) -> list[ShardJob]:
    """A build's jobs: shard n becomes the segment `segment_of(n)`, with the ids from n x `ID_STRIDE`."""
    return [ShardJob(directory.path, number, shard, dim, config, segment_of(number), number * ID_STRIDE)
            for number, shard in enumerate(shards)]


@dataclass
class ShardResult:
    number: int
    report: BuildReport
    reading: Reading
    """Where the shard's reading ended: each file's time counts, and the posts an add skipped as known."""


_worker: dict = {}


def _die_with_parent() -> None:
    """Linux: this worker is killed when the driver dies (even by ``kill -9``), so a rerun never meets an
    orphan still writing its segment."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _start_worker(encoder: Encoder | None, config: BuildConfig, threads: int, progress) -> None:
    """A local worker process's start: it dies with the driver, and reports records read to `progress`."""
    _die_with_parent()
    setup_worker(encoder, config, threads, config.encoding.device)
    # A worker killed while writing to the queue leaves its lock held for good: the others' last progress counts
    # then never leave, and a worker waiting for them at exit would hold the pool's shutdown forever.
    progress.cancel_join_thread()
    _worker["progress"] = progress


def setup_worker(encoder: Encoder | None, config: BuildConfig, threads: int, device: str) -> None:
    """What a worker (a local process or a Ray actor) needs to run `run_shard` and `seal_shard`."""
    native.set_threads(threads)
    _worker.update(encoder=encoder, config=config, device=device, progress=None)


def _encoding() -> Encoding:
    """This worker's encoder: the one the caller gave, else `config.encoder` loaded here (on first use, so that a
    failure to load is the shard's error, not a broken pool)."""
    if "encoding" not in _worker:
        config = _worker["config"]
        encoder = _worker["encoder"] or Encoder(config.encoder, device=_worker["device"], dtype=config.encoding.dtype,
                                                runtime=config.encoding.runtime)
        _worker["encoding"] = LocalEncoding(encoder, config.encoding, prefetch=False)
    return _worker["encoding"]


def run_shard(job: ShardJob) -> ShardResult:
    """Turn `job`'s shard into its segment, from where its ledger says it stopped; in a worker process."""
    encoding = _encoding()
    if encoding.dim != job.dim:
        raise HiclError(f"the encoder gives {encoding.dim}-dimensional vectors, the index holds {job.dim}")
    progress = _worker["progress"]
    started = time.perf_counter()
    directory = IndexDir(job.index)
    with shard_writer(directory, job) as writer, contextlib.ExitStack() as stack:
        stats = json.loads(writer.last.stats) if writer.last else {}
        report = BuildReport.from_stats(stats) if writer.last else BuildReport()
        reading = Reading.resumed(job.shard, stats)
        if writer.finished or stats.get("complete"):
            return ShardResult(job.number, report, reading)
        earlier = report.seconds
        chunks = (split(chunk) for chunk in record_chunks(reading.records(job.config.reader), job.config.chunk_size))
        if job.adding:  # the index's posts as they are now: the driver holds its write lock
            existing, seen = stack.enter_context(directory.open_store(directory.read_manifest())), set()
            chunks = ((chunk, existing.unknown(posts, seen), rejects) for chunk, posts, rejects in chunks)
        encoded = encoding.encoded(chunks, lambda chunk: [post.text for post in chunk[1]])
        for (chunk, posts, rejects), vectors in waited_for(encoded, report):
            report.rejected.update(reject.reason for reject in rejects)
            for post in posts:
                report.notes.update(post.notes)
            reading.count(chunk, posts)
            report.read += len(chunk)
            report.seconds = earlier + time.perf_counter() - started
            writer.commit(posts, vectors, rejects, records=report.read,
                          stats=json.dumps({**report.as_dict(), **reading.stats()}))
            if progress is not None:
                progress.put(len(chunk))
        report.seconds = earlier + time.perf_counter() - started
        writer.commit([], np.empty((0, job.dim), np.float32), [], records=report.read,
                      stats=json.dumps({**report.as_dict(), **reading.stats(), "complete": True}))
    return ShardResult(job.number, report, reading)


@dataclass(frozen=True)
class SealJob:
    """The FAISS part of a shard's segment: a copy of the trained index saved as `trained` holding its posts."""

    shard: ShardJob
    trained: str


def seal_shard(job: SealJob) -> Segment | None:
    """Seal the shard's segment (see `SegmentWriter.seal`), in a worker process; None when it holds no post."""
    directory = IndexDir(job.shard.index)
    with shard_writer(directory, job.shard) as writer:
        if not writer.store.count():
            return None
        return writer.seal(VectorIndex.load(directory.file(job.trained)))


def worker_count(workers: int | None, on_cpu: bool) -> int:
    """`workers`, or by default one a core (on a GPU at most 4, each with its model there)."""
    cores = native.available_cores()
    return workers or (cores if on_cpu else min(cores, 4))


def threads_each(config: BuildConfig, workers: int) -> int:
    """The threads of each worker's torch and FAISS: `config.threads` (default: every core) shared out."""
    return max(1, (config.threads or native.available_cores()) // workers)


class Workers:
    """A pool of worker processes (spawned: fork would copy torch's and FAISS's thread pools) that runs jobs,
    each a function of one argument that may be run again: a pool broken by a dying worker is made again
    and its unfinished jobs redone (a shard resumes from its ledger), up to `WORKER_TRIES` times."""

    def __init__(self, count: int, encoder: Encoder | None, config: BuildConfig, bar: tqdm) -> None:
        self.count, self.encoder, self.config = count, encoder, config
        self.context = multiprocessing.get_context("spawn")
        self.progress = self.context.Queue()
        self.pool: ProcessPoolExecutor | None = None
        self.breaks = 0
        self.where = f"{count} worker processes of {threads_each(config, count)} threads"
        self.stop = threading.Event()
        self.shower = threading.Thread(target=self._show, args=(bar,), daemon=True)
        self.shower.start()

    def _show(self, bar: tqdm) -> None:
        while not self.stop.is_set():
            try:
                bar.update(self.progress.get(timeout=0.2))
            except queue.Empty:
                continue
            except (EOFError, OSError, ValueError):
                return

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc_info: object) -> None:
        if self.pool is not None and kind is None:
            self.pool.shutdown(wait=True)
        elif self.pool is not None:  # a job's error: the others stop too (each resumes when rerun)
            self.pool.shutdown(wait=False, cancel_futures=True)
            _stop_workers(self.pool)
        self.stop.set()
        self.shower.join()
        self.progress.close()

    def run(self, function: Callable, jobs: Sequence) -> list:
        """`function` of each of `jobs`, in the order of `jobs`."""
        results: dict[int, object] = {}
        while len(results) < len(jobs):
            if self.pool is None:
                self.pool = ProcessPoolExecutor(
                    self.count, mp_context=self.context, initializer=_start_worker,
                    initargs=(self.encoder, self.config, threads_each(self.config, self.count), self.progress))
            futures = {self.pool.submit(function, job): number for number, job in enumerate(jobs)
                       if number not in results}
            broken = False
            for future in as_completed(futures):
                try:
                    results[futures[future]] = future.result()
                except BrokenProcessPool:
                    broken = True
            if broken:
                self.pool.shutdown(wait=True)
                self.pool = None
                self.breaks += 1
                self.progress = self.context.Queue()  # the dead worker may have held the old one's lock

                if self.breaks >= WORKER_TRIES:
                    raise HiclError(
                        f"build worker processes died {self.breaks} times (out of memory? a script that calls "
                        "build_index must do it under `if __name__ == \"__main__\":`, as the workers import it); "
                        "the shards they finished are kept: rerun the build to resume, with fewer --workers or "
                        "a smaller --chunk-size")
                LOG.warning("a build worker died; redoing its unfinished jobs")
        return [results[number] for number in range(len(jobs))]


def _stage(report: BuildReport, name: str, since: float) -> float:
    """Record the stage `name` as lasting from `since` until now; now."""
    now = time.perf_counter()
    report.stages[name] = now - since
    return now


def _pool(workers: int, encoder: Encoder | None, config: BuildConfig, bar: tqdm):
    """Local worker processes, or with `config.ray` Ray actors (reading the shards where they run)."""
    if config.ray is None:
        return Workers(workers, encoder, config, bar)
    from ..encoding.ray_workers import RayJobs

    return RayJobs(config.ray, config.encoding, functools.partial(setup_worker, encoder, config))


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Kill the pool's workers: their shards' ledgers keep what they committed."""
    for process in list((pool._processes or {}).values()):  # no public way to stop running tasks
        process.kill()


def _merged_report(results: Sequence[ShardResult], workers: int, config: BuildConfig) -> BuildReport:
    report = BuildReport(warnings=time_warnings([result.reading for result in results], config.reader.time_format))
    for result in results:
        part = result.report
        report.read += part.read
        report.rejected.update(part.rejected)
        report.notes.update(part.notes)
        report.encode_seconds += part.encode_seconds / workers
    return report


def _drop_repeated(directory: IndexDir, jobs: Sequence[ShardJob]) -> int:
    """Drop the posts repeating an earlier post's post id, in any shard (`SegmentWriter.finish`); how many.

    Asked again after an interruption, the answer for the unfinished shards is the same: a post
    kept (the first of its post id) is never dropped, so what repeats it still does. A build rejects
    them (`duplicate_post_id`); an add skips them, as it skips the post ids the index holds.
    """
    with PostStore.over(stores_of(directory, jobs)) as every:
        repeated = every.repeated_post_ids()
    ids = np.array([row[0] for row in repeated], dtype=np.int64)
    for job in jobs:
        with shard_writer(directory, job) as writer:
            if writer.finished:
                continue
            mine = (ids >= job.first_id) & (ids < job.first_id + ID_STRIDE)
            writer.finish([row for row, own in zip(repeated, mine, strict=True) if own], records=writer.last.records,
                          stats=writer.last.stats, rejected=not job.adding)
    return len(repeated)


def _append_rejects(directory: IndexDir, jobs: Sequence[ShardJob], start: int = 0) -> None:
    """Every shard's rejects in corpus order, appended to rejects.jsonl from its byte `start` (what the manifest
    covers: rejects.jsonl may be longer than it says, and an interrupted change left what lies beyond), synced."""
    with open(directory.file(REJECTS), "ab") as out:
        out.truncate(start)
        for job in jobs:
            with open(directory.file(job.rejects), "rb") as part:
                while block := part.read(1 << 20):
                    out.write(block)
        synced(out)


def build_sharded(directory: IndexDir, shards: list[Shard], workers: int, config: BuildConfig, encoding: Encoding,
                  encoder: Encoder | None, *, load_seconds: float, resumed: bool, seconds: Callable[[], float],
                  estimated: int, folder_existed: bool) -> BuildReport:
    """Build the index in `directory` from `shards` with `workers` processes (see the module's docstring).

    `encoder`, when the caller gave one, is sent to every worker; otherwise each loads `config.encoder`.
    """
    jobs = build_jobs(directory, shards, encoding.dim, config)
    with (
        tqdm(desc=f"reading and encoding ({workers} workers)", unit=" records", total=max(estimated, 1),
             disable=not config.progress) as bar,
        _pool(workers, encoder, config, bar) as pool,
    ):
        tick = time.perf_counter()
        results = pool.run(run_shard, jobs)
        report = _merged_report(results, workers, config)
        report.index, report.load_seconds, report.resumed = directory.path, load_seconds, resumed
        report.encoded_on = pool.where
        tick = _stage(report, "shards", tick)
        report.duplicates = _drop_repeated(directory, jobs)
        tick = _stage(report, "repeated post ids", tick)
        _append_rejects(directory, jobs)
        tick = _stage(report, "rejects", tick)
        with PostStore.over(stores_of(directory, jobs)) as every:
            ids = every.ids()
            report.indexed = len(ids)
            report.repeated_texts = every.repeated_texts()
        if report.indexed == 0:
            message = nothing_indexed(report.read, report.rejected, directory.file(REJECTS))
            directory.discard(keep_folder=folder_existed)
            raise HiclError(message)
        parts = []
        for job in jobs:
            with shard_writer(directory, job) as writer:
                parts += writer.vectors().parts
        plan, trained = trained_for(directory, SegmentVectors(parts, encoding.dim), ids, encoding, config)
        tick = _stage(report, "train", tick)
        sealed = pool.run(seal_shard, [SealJob(job, BUILD_TRAINED) for job in jobs])
        _stage(report, "seal", tick)
    segments = [segment for segment in sealed if segment is not None]
    manifest = commit_index(directory, segments, ids, plan, trained, encoding, config, report, seconds)
    remove_unnamed(directory, {MANIFEST, *manifest.named_files()})  # the shards' leftovers
    return report



def add_sharded(directory: IndexDir, manifest: Manifest, shards: list[Shard], workers: int, config: BuildConfig,
                estimated: int) -> tuple[list[Segment], BuildReport, int]:
    """Add `shards` to the finished index in `directory` (its write lock held) as new segments, one a shard,
    written by `workers` processes that skip the post ids the index holds, their parts sealed under its trained
    index; rejects appended to rejects.jsonl. (The segments that hold posts, not yet in the manifest; the
    report; the posts skipped for their post id.) A change, not a build: interrupted, it leaves nothing the
    manifest names, and the next change removes what it wrote."""
    base = new_segment_name()
    jobs = [ShardJob(directory.path, number, shard, manifest.dim, config, f"{base}-s{number:05d}",
                     manifest.next_id + number * ID_STRIDE, adding=True) for number, shard in enumerate(shards)]
    with (
        tqdm(desc=f"adding ({workers} workers)", unit=" records", total=max(estimated, 1),
             disable=not config.progress) as bar,
        _pool(workers, None, config, bar) as pool,
    ):
        results = pool.run(run_shard, jobs)
        report = _merged_report(results, workers, config)
        known = sum(result.reading.known for result in results) + _drop_repeated(directory, jobs)
        _append_rejects(directory, jobs, manifest.files.get(REJECTS, 0))
        sealed = pool.run(seal_shard, [SealJob(job, manifest.trained_file) for job in jobs])
    report.encoded_on = pool.where
    return [segment for segment in sealed if segment is not None], report, known
