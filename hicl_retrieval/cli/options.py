"""The options several commands share, each defined once, and the settings they become."""

from __future__ import annotations

import argparse


class Parser(argparse.ArgumentParser):
    """argparse with its usage errors on one line (exit status 2), like every other error."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_index(command, help: str = "index directory") -> None:
    command.add_argument("index", help=help)


def check_index_names(args: argparse.Namespace) -> None:
    """Refuse an index folder (``args.index``, one or a list) whose name UTF-8 cannot hold, before any work:
    DuckDB and FAISS open only UTF-8 paths, and fail with a C++ error on others."""
    from ..core.files import check_name

    index = getattr(args, "index", None)
    for path in [index] if isinstance(index, str) else index or []:
        check_name(path, "index folder")


def add_threads(command, what: str = "torch and FAISS") -> None:
    command.add_argument("--threads", type=int, help=f"CPU threads for {what} (default: all cores)")


def add_workers(command) -> None:
    """--workers (local processes, or with --ray Ray actors) and --shard-bytes."""
    command.add_argument("--workers", type=int, help=(
        "worker processes, each turning shards of the corpus into segments (default: one a core, at most 4 on a "
        "GPU, for 100,000 records or more); with --ray: Ray workers (default: one per GPU of the cluster, else one "
        "per --threads CPUs)"))
    command.add_argument("--shard-bytes", type=int,
                         help="bytes of a shard of a large uncompressed file (default: about four shards a worker, "
                              "1 to 256 MiB)")


def add_vocabulary(command) -> None:
    """--min-count and --max-share: which hashtags count as topics (learning/pairs.py's TagVocabulary)."""
    command.add_argument("--min-count", type=int, default=2,
                         help="hashtags in fewer posts do not count (default: 2: a pair needs two)")
    command.add_argument("--max-share", type=float, default=0.01,
                         help="hashtags in more than this share of the posts do not count: dataset markers and "
                              "fillers (default: 0.01)")


def add_plot(command, what: str) -> None:
    command.add_argument("--plot", metavar="FILE.png",
                         help=f"draw {what} to FILE.png, the numbers beside in FILE.json (needs the plot extra)")


def add_quiet(command) -> None:
    command.add_argument("--quiet", action="store_true", help="no progress bar")


def add_json(command, what: str = "the report") -> None:
    command.add_argument("--json", action="store_true", help=f"print {what} as JSON")


def add_chunking(command, chunk_help: str = "posts read, encoded and stored together") -> None:
    command.add_argument("--chunk-size", type=int, default=4096, help=f"{chunk_help} (default: 4096)")


def add_device(command, *, index: bool = True) -> None:
    """Where the encoder runs; `index`: the command encodes for an existing index (its precision)."""
    command.add_argument("--device", default="auto",
                         help="auto, cpu, cuda, cuda:N or mps; auto takes the first GPU, else the CPU (default: auto)")
    dtype_auto = ("the index's own; another is refused" if index
                  else "bfloat16 on a GPU that has it, else float16 on a GPU, float32 on a CPU")
    command.add_argument("--dtype", default="auto", help=f"auto, float32, float16 or bfloat16 (auto: {dtype_auto})")
    command.add_argument("--batch-size", type=int,
                         help="posts per encoder batch at most (default: 64 on a CPU, no limit on a GPU)")
    command.add_argument("--max-tokens-per-batch", type=int,
                         help="padded tokens per encoder batch at most, over posts sorted by length "
                              "(default: 2048 on a CPU, 65536 on a CUDA GPU, 16384 on MPS)")
    command.add_argument("--runtime", default="auto",
                         help="what runs the model: torch, onnx (ONNX Runtime: CPU, float32) or auto (ONNX Runtime "
                              "where installed and suited, and only where its vectors equal PyTorch's) (default: auto)")


def device_of(args: argparse.Namespace):
    from ..core.config import DeviceConfig

    return DeviceConfig(device=args.device, dtype=args.dtype, batch_size=args.batch_size,
                        max_tokens_per_batch=args.max_tokens_per_batch, runtime=args.runtime)


def add_ray(command) -> None:
    ray = command.add_argument_group("encoding on a Ray cluster (pip install 'hicl-retrieval[ray]')")
    ray.add_argument("--ray", nargs="?", const="auto", metavar="auto|local|ADDRESS",
                     help="encode in a pool of Ray actors: auto joins the cluster `ray start` made or RAY_ADDRESS, "
                          "else starts one here; local starts one here; ADDRESS joins that cluster")
    ray.add_argument("--gpus-per-worker", type=float,
                     help="GPUs of each worker (default: 1 if the cluster has GPUs and --device is not cpu, else 0)")
    ray.add_argument("--ray-cpus", type=int, help="CPUs of a cluster started here (default: all)")


def ray_of(args: argparse.Namespace):
    """The Ray settings of --ray, where `--threads` is per worker; None without --ray."""
    from ..core.config import RayConfig
    from ..core.errors import HiclError

    if args.ray is None:
        given = [name for name in ("gpus_per_worker", "ray_cpus") if getattr(args, name) is not None]
        if given:
            raise HiclError(f"--{given[0].replace('_', '-')} sets up Ray workers: add --ray")
        return None
    return RayConfig(address=args.ray, workers=args.workers, gpus_per_worker=args.gpus_per_worker,
                     threads=args.threads, cpus=args.ray_cpus)


def add_k_factor(command, default: str = "the index's") -> None:
    command.add_argument("--k-factor", type=int,
                         help=f"candidates per hit re-ranked exactly from the stored vectors (default: {default})")


def add_hashtag_rule(command) -> None:
    command.add_argument("--hashtag-rule", default="twitter", choices=("twitter", "hicl"),
                         help="how hashtags are extracted: twitter (letters, marks, digits and _ of any script) or "
                              "hicl (the HICL reference code: ASCII letters and digits, at most 30 characters) "
                              "(default: twitter)")


def add_index_type(command) -> None:
    command.add_argument("--index", dest="faiss_factory", default="auto",
                         help="auto, flat, hnsw, ivf, ivfpq or a FAISS factory string (inner product); "
                              "auto: exact search up to 16 MiB of vectors (10,922 posts at 384 dims), else IVF "
                              "with 4-bit fast-scan PQ codes that fit --max-memory, re-ranked exactly from disk "
                              "(default: auto)")
    command.add_argument("--max-memory", help="RAM budget for building and searching, e.g. 8GB (default: all RAM)")
    command.add_argument("--target-recall", type=float, default=0.95,
                         help="recall@10 against exact search that approximate search is tuned to (default: 0.95)")


def memory(args: argparse.Namespace) -> int | None:
    from ..index.planning import parse_size

    return parse_size(args.max_memory) if args.max_memory else None


def add_reading(command) -> None:
    reading = command.add_argument_group("reading the corpus")
    reading.add_argument("--format", default="auto", choices=("auto", "text", "jsonl", "csv", "tsv", "parquet"),
                         help="corpus format (default: from the file name, else the content)")
    reading.add_argument("--text-col", help="text column / JSON key (default: detected, e.g. text, full_text)")
    reading.add_argument("--id-col",
                         help="post id column (default: the first of id_str, post_id, tweet_id, status_id, id)")
    reading.add_argument("--author-col", help="author column (default: detected, e.g. author, screen_name)")
    reading.add_argument("--time-col", help="creation time column (default: detected, e.g. created_at)")
    reading.add_argument("--delimiter", help="CSV delimiter (default: ',' for .csv, '\\t' for .tsv)")
    reading.add_argument("--time-format",
                         help="how the time column is written, as a strptime format (e.g. '%%d/%%m/%%Y %%H:%%M') "
                              "or unix / unix_ms (default: ISO 8601, the Twitter format or Unix seconds)")
    reading.add_argument("--max-record-bytes", type=int, default=1 << 20,
                         help="reject lines/records longer than this (default: 1 MiB)")


def reader(args: argparse.Namespace):
    from ..core.config import ReaderConfig

    return ReaderConfig(
        format=args.format, text_col=args.text_col, id_col=args.id_col, author_col=args.author_col,
        time_col=args.time_col, delimiter=args.delimiter, max_record_bytes=args.max_record_bytes,
        time_format=args.time_format,
    )


def add_filters(command) -> None:
    filters = command.add_argument_group("filters (combined with AND; options that take a name may be repeated)")
    filters.add_argument("--has-hashtag", action="append", default=[], metavar="TAG", help="hits carry this hashtag")
    filters.add_argument("--lacks-hashtag", action="append", default=[], metavar="TAG", help="hits lack this hashtag")
    filters.add_argument("--author", action="append", default=[], metavar="NAME", help="hits by one of these authors")
    filters.add_argument("--exclude-author", action="append", default=[], metavar="NAME",
                         help="no hits by these authors")
    filters.add_argument("--since", metavar="TIME",
                         help="hits created at or after TIME, UTC: ISO 8601, YYYY, YYYYMM, YYYYMMDD or @UNIX_SECONDS")
    filters.add_argument("--until", metavar="TIME", help="hits created before TIME (written as for --since)")
    filters.add_argument("--source", action="append", default=[], metavar="FILE",
                         help="hits from this corpus file (full path or file name)")
    filters.add_argument("--exclude-source", action="append", default=[], metavar="FILE",
                         help="no hits from this corpus file")


def filter_of(args: argparse.Namespace):
    from ..index.filters import from_options

    return from_options(
        has_hashtags=args.has_hashtag, lacks_hashtags=args.lacks_hashtag, authors=args.author,
        exclude_authors=args.exclude_author, since=args.since, until=args.until,
        sources=args.source, exclude_sources=args.exclude_source,
    )
