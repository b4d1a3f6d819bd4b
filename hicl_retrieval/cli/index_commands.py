"""Commands that make, change and read out an index: build, add, delete, compact, reindex, verify, export, info."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from ..core.errors import HiclError
from . import options


def register(commands) -> None:
    build = commands.add_parser("build", help="build an index from corpus files")
    build.add_argument("corpus", nargs="+", help="corpus files: .txt, .jsonl, .csv, .tsv, .parquet, optionally .gz/.zst")
    build.add_argument("--out", required=True, help="index directory to create")
    build.add_argument("--encoder", default="hashencoder",
                       help="preset name (hashencoder, minilm), preset .toml file, model directory or hub id "
                            "(default: hashencoder)")
    build.add_argument("--pooling", choices=("cls", "mean", "pooler"), help="override the encoder's pooling")
    options.add_hashtag_rule(build)
    build.add_argument("--int8", action="store_true",
                       help="quantise the encoder's linear layers to int8 (faster on CPU; queries use it too)")
    options.add_index_type(build)
    build.add_argument("--overwrite", action="store_true", help="replace an existing index (or unfinished build) at --out")
    build.add_argument("--resume", action="store_true",
                       help="continue the interrupted build at --out (rerunning the same command does it too); "
                            "fail if there is none")
    options.add_reading(build)
    running = build.add_argument_group("running")
    options.add_chunking(running)
    options.add_device(running, index=False)
    options.add_threads(running, "torch and FAISS, shared by the workers (with --ray: torch in each worker)")
    options.add_workers(running)
    options.add_quiet(running)
    options.add_json(running, "the build report")
    options.add_ray(build)
    build.set_defaults(run=_build)

    add = commands.add_parser("add", help="add posts to an index (skipping post ids it holds), encoding only them")
    options.add_index(add)
    add.add_argument("corpus", nargs="+", help="corpus files, as for build")
    options.add_reading(add)
    options.add_chunking(add, "posts read and encoded together")
    options.add_device(add)
    options.add_threads(add, "torch and FAISS (with --ray: torch in each worker)")
    options.add_workers(add)
    options.add_quiet(add)
    options.add_ray(add)
    add.set_defaults(run=_add)

    delete = commands.add_parser("delete", help="remove posts from results now (from the files at `compact`)")
    options.add_index(delete)
    delete.add_argument("--post-id", action="append", default=[], help="post id to delete (may be repeated)")
    options.add_filters(delete)
    delete.set_defaults(run=_delete)

    compact = commands.add_parser("compact", help="rewrite an index without its deleted posts")
    options.add_index(compact)
    compact.set_defaults(run=_compact)

    reindex = commands.add_parser("reindex", help="rebuild the FAISS index as another type, without re-encoding")
    options.add_index(reindex)
    options.add_index_type(reindex)
    options.add_k_factor(reindex, "10 for compressed codes such as PQ, else 1")
    options.add_threads(reindex, "FAISS")
    reindex.set_defaults(run=_reindex)

    verify = commands.add_parser(
        "verify", help="check every file of an index against its checksums, and its posts, vectors and FAISS index")
    options.add_index(verify)
    verify.set_defaults(run=_verify)

    export = commands.add_parser("export", help="write every live post of an index to Parquet or JSON lines")
    options.add_index(export)
    export.add_argument("--out", required=True, help="file to write: .parquet or .jsonl")
    export.add_argument("--vectors", action="store_true", help="add each post's stored vector (column 'vector')")
    export.set_defaults(run=_export)

    info = commands.add_parser("info", help="describe an index")
    options.add_index(info)
    options.add_json(info, "the manifest")
    options.add_plot(info, "posts over time, the most frequent hashtags and authors, and the segments "
                           "(the search page's view of the index)")
    info.set_defaults(run=_info)


def _build(args: argparse.Namespace) -> None:
    from ..core.config import BuildConfig, resolve_encoder
    from ..index.directory import IndexDir
    from ..workflows.build import build_index

    if args.resume and IndexDir(args.out).read_build_state() is None:
        raise HiclError(f"--resume: there is no unfinished build at {args.out}")
    if args.resume and args.overwrite:
        raise HiclError("--resume and --overwrite contradict each other; choose one")

    encoder = resolve_encoder(args.encoder, pooling=args.pooling)
    config = BuildConfig(
        encoder=dataclasses.replace(encoder, quantize="int8") if args.int8 else encoder,
        reader=options.reader(args),
        faiss_factory=args.faiss_factory,
        max_memory=options.memory(args),
        target_recall=args.target_recall,
        chunk_size=args.chunk_size,
        encoding=options.device_of(args),
        ray=options.ray_of(args),
        workers=None if args.ray else args.workers,
        shard_bytes=args.shard_bytes,
        threads=None if args.ray else args.threads,
        hashtag_rule=args.hashtag_rule,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    report = build_index(args.corpus, args.out, config, announce=lambda line: print(line, file=sys.stderr))
    if args.json:
        print(json.dumps({"index": str(report.index), **report.as_dict()}))
    else:
        print(f"index {report.index}")
        print(report.summary())


def _reindex(args: argparse.Namespace) -> None:
    from ..core import native
    from ..index.tuning import format_against
    from ..workflows.compact import reindex

    native.set_threads(args.threads)
    manifest = reindex(args.index, args.faiss_factory, k_factor=args.k_factor, max_memory=options.memory(args),
                       target_recall=args.target_recall)
    tuned = ""
    if manifest.tuning:
        recall, target = format_against(manifest.tuning["recall_at_10"], manifest.tuning["target"])
        params = ", ".join(f"{k}={v}" for k, v in manifest.search_params.items())
        tuned = f", {params} (recall@10 {recall} against exact search, target {target})"
    print(f"{args.index}: {manifest.count} posts now in {manifest.faiss_factory}, k_factor {manifest.k_factor}{tuned}")


def _add(args: argparse.Namespace) -> None:
    from ..core import native
    from ..workflows.update import add_posts

    ray = options.ray_of(args)
    native.set_threads(None if ray else args.threads)
    report = add_posts(args.index, args.corpus, reader=options.reader(args), running=options.device_of(args),
                       ray=ray, chunk_size=args.chunk_size, progress=not args.quiet,
                       workers=None if ray else args.workers, shard_bytes=args.shard_bytes)
    print(f"{args.index}: {report.summary()}")


def _delete(args: argparse.Namespace) -> None:
    from ..workflows.update import delete_posts

    deleted = delete_posts(args.index, post_ids=args.post_id, filter=options.filter_of(args))
    print(f"{args.index}: {deleted} posts deleted (their rows leave the files at the next compact)")


def _compact(args: argparse.Namespace) -> None:
    from ..workflows.compact import compact

    manifest = compact(args.index)
    print(f"{args.index}: compacted to {manifest.count} posts in one segment ({manifest.faiss_factory})")


def _verify(args: argparse.Namespace) -> None:
    from ..workflows.verify import verify_index

    report = verify_index(args.index)
    print("\n".join(report.lines()))
    if report.damaged:
        names = ", ".join(check.what for check in report.damaged)
        raise HiclError(f"{args.index} is damaged ({names}): {report.advice()}")
    print(f"{args.index}: intact")


def _export(args: argparse.Namespace) -> None:
    from ..workflows.export import export_index

    written = export_index(args.index, args.out, vectors=args.vectors)
    print(f"{written} posts of {args.index} in {args.out}")


def _info(args: argparse.Namespace) -> None:
    from ..core.plots import check_plot_path
    from ..index.adapter import adapter_summary
    from ..index.directory import IndexDir
    from ..index.tuning import format_against
    from ..index.usage import compaction_advice, usage

    if args.plot:
        check_plot_path(args.plot)
    directory = IndexDir(args.index)
    manifest = directory.read_manifest()
    if args.json:
        print(json.dumps(manifest.to_dict(), indent=2, ensure_ascii=False))
        if args.plot:
            _plot_shape(args.plot, directory, manifest, sys.stderr)
        return
    enc = manifest.encoder
    stats = manifest.stats
    rejected = stats.get("rejected", {})
    print(f"index       {args.index} (format {manifest.format_version}, hicl-retrieval {manifest.library_version})")
    print(f"posts       {manifest.count}")
    print(f"encoder     {enc.preset or '-'}: {enc.model} (revision {manifest.model_revision or 'unknown'})")
    print(f"            pooling {enc.pooling}, text normalisation {enc.text_normalization}, "
          f"max {enc.max_length} tokens, {manifest.dim} dimensions, encoded in {enc.dtype}"
          + (" (int8 linear layers)" if enc.quantize == "int8" else ""))
    print(f"hashtags    {manifest.hashtag_rule} rule")
    print(f"faiss       {manifest.faiss_factory}, inner product on unit vectors, "
          f"re-rank k_factor {manifest.k_factor}")
    if manifest.tuning:
        tuning = manifest.tuning
        params = ", ".join(f"{k}={v}" for k, v in manifest.search_params.items())
        recall, target = format_against(tuning["recall_at_10"], tuning["target"])
        print(f"search      {params}: recall@10 {recall} against exact search "
              f"(target {target}, {tuning['queries']} corpus posts as queries)")
    print(f"adapter     {adapter_summary(manifest.adapter)}")
    print(f"created     {manifest.created_at}")
    if stats:
        print(f"build       read {stats.get('read')}, indexed {stats.get('indexed')}, "
              f"rejected {sum(rejected.values())} {rejected or ''}, duplicate post ids {stats.get('duplicates')}, "
              f"{stats.get('seconds')} s" + (f" on {stats['encoded_on']}" if stats.get("encoded_on") else ""))
    rows = usage(directory, manifest)
    shown = ", ".join(f"{row.name} ({row.posts} posts, {row.bytes / 1e6:.1f} MB)" for row in rows[:6])
    print(f"segments    {len(rows)}: {shown}" + (f", and {len(rows) - 6} more" if len(rows) > 6 else ""))
    deleted = sum(row.deleted for row in rows)
    print(f"deleted     {deleted} rows not compacted yet, holding about "
          f"{sum(row.deleted_bytes for row in rows) / 1e6:.1f} MB; {compaction_advice(manifest, rows)}")
    print(f"files       {len(manifest.files)}, {sum(manifest.files.values()) / 1e6:.1f} MB in all")
    if args.plot:
        _plot_shape(args.plot, directory, manifest, sys.stdout)


def _plot_shape(path: str, directory, manifest, out) -> None:
    from ..core.plots import write_bars
    from ..index.stats import index_stats, shape_panels

    with directory.open_store(manifest) as store:
        stats = index_stats(directory, manifest, store)
    span = f", {stats['first'][:10]} to {stats['last'][:10]}" if stats["first"] else ""
    numbers = write_bars(path, panels=shape_panels(stats), numbers=stats,
                         title=f"{directory.path}: {stats['posts']} posts, {stats['dated']} with a time{span}; "
                               f"{stats['deleted']} deleted rows in {len(stats['segments'])} segments")
    print(f"plot in {path}, its numbers in {numbers}", file=out)
