"""Commands that train models: train-encoder (a topic encoder), adapt (a topic adapter for an index) and
finetune (a classifier with HICL demonstrations)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from ..core.errors import HiclError
from . import options


def register(commands) -> None:
    _register_train_encoder(commands)
    _register_adapt(commands)
    _register_finetune(commands)


def _register_adapt(commands) -> None:
    from ..core.config import AdaptConfig

    defaults = {f.name: f.default for f in dataclasses.fields(AdaptConfig)}
    adapt = commands.add_parser(
        "adapt", help="learn a topic adapter from the index's own hashtags; applied only if held-out posts gain")
    options.add_index(adapt)
    adapt.add_argument("--remove", action="store_true", help="remove the index's adapter: queries use the plain encoder")
    recipe = adapt.add_argument_group("recipe")
    recipe.add_argument("--rank", type=int, default=defaults["rank"], help="rank of the residual map (default: %(default)s)")
    recipe.add_argument("--steps", type=int, default=defaults["steps"],
                        help="optimiser steps at most; training stops when validation stops gaining (default: %(default)s)")
    recipe.add_argument("--anchors-per-step", type=int, default=defaults["batch_size"],
                        help="anchors a step; the other anchors' positives are the negatives (default: %(default)s)")
    recipe.add_argument("--untagged-negatives", type=int, default=defaults["untagged_negatives"],
                        help="posts without an eligible hashtag added to each step as negatives: raises hit@10 "
                             "mostly by ranking tagged posts first (default: %(default)s)")
    recipe.add_argument("--lr", type=float, default=defaults["learning_rate"], help="learning rate (default: %(default)s)")
    recipe.add_argument("--temperature", type=float, default=defaults["temperature"],
                        help="InfoNCE temperature (default: %(default)s)")
    recipe.add_argument("--sample", type=int, default=defaults["sample"],
                        help="posts with an eligible hashtag encoded without it as anchors, the main cost "
                             "(default: %(default)s)")
    recipe.add_argument("--held-out", type=int, default=defaults["held_out"],
                        help="posts that judge the adapter, never trained on (default: %(default)s, at most a fifth)")
    recipe.add_argument("--validation", type=int, default=defaults["validation"],
                        help="posts that choose the step kept, never trained on (default: %(default)s, at most a fifth)")
    recipe.add_argument("--check-every", type=int, default=defaults["check_every"],
                        help="steps between validation checks (default: %(default)s)")
    recipe.add_argument("--patience", type=int, default=defaults["patience"],
                        help="checks without a better validation score before stopping (default: %(default)s)")
    options.add_vocabulary(recipe)
    recipe.add_argument("--seed", type=int, default=defaults["seed"], help="random seed (default: %(default)s)")
    running = adapt.add_argument_group("running")
    options.add_device(running)
    options.add_threads(running, "torch and FAISS")
    options.add_quiet(running)
    options.add_json(running)
    options.add_plot(running, "held-out hashtag hit@1..10 with and without the adapter")
    adapt.set_defaults(run=_adapt)


def _register_train_encoder(commands) -> None:
    from ..core.config import TrainConfig

    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    train = commands.add_parser(
        "train-encoder", help="train a topic encoder on the hashtags of posts (hashtag-driven contrastive learning)")
    train.add_argument("corpus", nargs="+", help="corpus files, as for build")
    train.add_argument("--base", default="minilm",
                       help="encoder to start from: preset name, preset .toml, model directory or hub id (default: minilm)")
    train.add_argument("--out", required=True,
                       help="model directory to write (rerunning the command resumes an interrupted training)")
    train.add_argument("--overwrite", action="store_true", help="replace a trained encoder or unfinished training at --out")
    recipe = train.add_argument_group("recipe")
    recipe.add_argument("--steps", type=int, default=defaults["steps"], help="optimiser steps (default: %(default)s)")
    recipe.add_argument("--batch-size", type=int, default=defaults["batch_size"],
                        help="positive pairs a step; the other pairs are the negatives (default: %(default)s)")
    recipe.add_argument("--grad-cache", type=int, metavar="POSTS",
                        help="encode POSTS at a time with gradient caching, for batches larger than memory allows")
    recipe.add_argument("--lr", type=float, default=defaults["learning_rate"],
                        help="peak learning rate (default: %(default)s)")
    recipe.add_argument("--warmup", type=float, default=defaults["warmup"],
                        help="share of the steps warming the learning rate up (default: %(default)s)")
    recipe.add_argument("--temperature", type=float, default=defaults["temperature"],
                        help="InfoNCE temperature (default: %(default)s)")
    recipe.add_argument("--anchor-drop", type=float, default=defaults["anchor_drop"],
                        help="probability of removing each hashtag of the anchor (default: %(default)s)")
    recipe.add_argument("--positive-drop", type=float, default=defaults["positive_drop"],
                        help="probability of removing each hashtag of the positive (default: %(default)s)")
    recipe.add_argument("--max-length", type=int, default=defaults["max_length"],
                        help="tokens a post is cut to in training (default: %(default)s)")
    options.add_vocabulary(recipe)
    recipe.add_argument("--tag-power", type=float, default=defaults["tag_power"],
                        help="draw a pair's tag with probability proportional to its posts ** POWER: "
                             "1 favours frequent tags, 0 treats every tag alike (default: %(default)s)")
    recipe.add_argument("--untagged-negatives", type=int, default=defaults["untagged_negatives"],
                        help="posts without an eligible hashtag added to each batch as extra negatives "
                             "(default: %(default)s)")
    recipe.add_argument("--base-share", type=float, default=defaults["base_share"],
                        help="share of the base model averaged into the trained weights at the end, so "
                             "posts unlike the training corpus keep more of their neighbours (default: %(default)s)")
    recipe.add_argument("--held-out", type=int, default=defaults["held_out"],
                        help="posts with an eligible hashtag never trained on; the evaluation queries, "
                             "written to OUT/held_out.jsonl (default: %(default)s)")
    recipe.add_argument("--seed", type=int, default=defaults["seed"], help="random seed (default: %(default)s)")
    options.add_hashtag_rule(recipe)
    running = train.add_argument_group("running")
    running.add_argument("--eval-every", type=int, default=defaults["eval_every"],
                         help="steps between held-out evaluations (default: %(default)s)")
    running.add_argument("--eval-corpus", type=int, default=defaults["eval_corpus"],
                         help="posts the held-out queries search during training (default: %(default)s)")
    running.add_argument("--checkpoint-every", type=int, default=defaults["checkpoint_every"],
                         help="steps between checkpoints (default: %(default)s)")
    running.add_argument("--device", default="cpu", help="torch device, e.g. cuda (default: cpu)")
    options.add_threads(running, "torch")
    options.add_quiet(running)
    options.add_reading(train)
    train.set_defaults(run=_train_encoder)


def _register_finetune(commands) -> None:
    from ..core.config import FinetuneConfig
    from ..learning.scoring import TASK_METRICS

    defaults = {f.name: f.default for f in dataclasses.fields(FinetuneConfig)}
    tune = commands.add_parser("finetune", help="fine-tune a classifier with HICL demonstrations (or plainly), "
                                                "several seeds, official task metric")
    tune.add_argument("--task", required=True, choices=sorted(TASK_METRICS), help="sets the official metric")
    tune.add_argument("--backbone", default="minilm",
                      help="classifier to fine-tune: hub id, model directory or encoder preset (default: minilm)")
    data = tune.add_mutually_exclusive_group(required=True)
    data.add_argument("--data", help="TweetEval task folder ({split}_text.txt, {split}_labels.txt for train, val, "
                                     "test); plain fine-tuning only")
    data.add_argument("--train", help="training examples, JSON lines (augment's output for HICL)")
    tune.add_argument("--dev", help="dev examples, JSON lines (with --train)")
    tune.add_argument("--test", help="test examples, JSON lines (with --train)")
    tune.add_argument("--no-context", action="store_true",
                      help="the baseline: fine-tune on the example alone, same seeds and budget")
    tune.add_argument("--template", default=defaults["template"],
                      help="trigger tokens before x, between x and x', after x' (default: %(default)s)")
    tune.add_argument("--seeds", type=int, nargs="+", default=list(defaults["seeds"]), help="(default: 0 1 2)")
    tune.add_argument("--epochs", type=int, default=defaults["epochs"],
                      help="most epochs of stage one (default: %(default)s)")
    tune.add_argument("--trigger-epochs", type=int, default=defaults["trigger_epochs"],
                      help="most epochs of stage two, triggers only (default: %(default)s)")
    tune.add_argument("--patience", type=int, default=defaults["patience"],
                      help="stop a stage after this many epochs without a better dev score (default: %(default)s)")
    tune.add_argument("--lr", type=float, default=defaults["learning_rate"], help="stage one (default: %(default)s)")
    tune.add_argument("--trigger-lr", type=float, default=defaults["trigger_learning_rate"],
                      help="stage two (default: %(default)s)")
    tune.add_argument("--batch-size", type=int, default=defaults["batch_size"], help="(default: %(default)s)")
    tune.add_argument("--no-group-by-length", action="store_true",
                      help="plain shuffled batches instead of batches of similar length (more padding)")
    tune.add_argument("--max-query", type=int, default=defaults["max_query"],
                      help="tokens of the example (default: %(default)s)")
    tune.add_argument("--max-demonstration", type=int, default=defaults["max_demonstration"],
                      help="tokens of the retrieved post (default: %(default)s)")
    tune.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    options.add_threads(tune, "torch")
    options.add_quiet(tune)
    options.add_json(tune)
    tune.set_defaults(run=_finetune)


def _train_encoder(args: argparse.Namespace) -> None:
    from ..core.config import TrainConfig, resolve_encoder
    from ..workflows.train_encoder import train_encoder

    config = TrainConfig(
        base=resolve_encoder(args.base), reader=options.reader(args), steps=args.steps, batch_size=args.batch_size,
        grad_cache=args.grad_cache, learning_rate=args.lr, warmup=args.warmup, temperature=args.temperature,
        anchor_drop=args.anchor_drop, positive_drop=args.positive_drop, max_length=args.max_length,
        min_count=args.min_count, max_share=args.max_share, tag_power=args.tag_power,
        untagged_negatives=args.untagged_negatives, base_share=args.base_share,
        held_out=args.held_out, eval_every=args.eval_every,
        eval_corpus=args.eval_corpus, checkpoint_every=args.checkpoint_every, seed=args.seed,
        hashtag_rule=args.hashtag_rule, device=args.device,
        threads=args.threads, progress=not args.quiet,
    )
    report = train_encoder(args.corpus, args.out, config, overwrite=args.overwrite)
    print(f"encoder {report.out} (use it as: build --encoder {report.out})")
    print(report.summary())


def _adapt(args: argparse.Namespace) -> None:
    from ..core.config import AdaptConfig
    from ..core.plots import check_plot_path, write_curves
    from ..workflows.adapt import adapt_index, remove_adapter

    if args.remove:
        removed = remove_adapter(args.index)
        print(f"{args.index}: " + ("adapter removed; queries use the plain encoder" if removed
                                   else "has no adapter; nothing to remove"))
        return
    config = AdaptConfig(
        rank=args.rank, steps=args.steps, batch_size=args.anchors_per_step,
        untagged_negatives=args.untagged_negatives, learning_rate=args.lr,
        temperature=args.temperature, sample=args.sample, held_out=args.held_out, validation=args.validation,
        check_every=args.check_every, patience=args.patience, min_count=args.min_count, max_share=args.max_share,
        seed=args.seed, threads=args.threads, progress=not args.quiet,
    )
    if args.plot:
        check_plot_path(args.plot)
    report = adapt_index(args.index, config, running=options.device_of(args))
    print(json.dumps(report.to_dict()) if args.json else report.summary())
    if args.plot:
        numbers = write_curves(
            args.plot, x=range(1, len(report.curve_before) + 1), xlabel="k",
            title=f"held-out hashtag hit@k of {report.held_out} posts never trained on (seed {args.seed}), hashtags "
                  f"stripped; {report.posts} posts; adapter {'applied' if report.applied else 'not applied'}",
            series={"plain encoder": report.curve_before, f"adapter rank {report.rank}": report.curve_after},
            ylabel="hit@k (a neighbour shares a hashtag)", details={"applied": report.applied})
        print(f"plot in {args.plot}, its numbers in {numbers}", file=sys.stderr if args.json else sys.stdout)


def _finetune(args: argparse.Namespace) -> None:
    from ..core.config import FinetuneConfig
    from ..workflows.finetune import finetune, read_jsonl_split, read_tweeteval_split

    if args.data:
        if args.dev or args.test:
            raise HiclError("--data reads all three splits; --dev and --test go with --train")
        train, dev, test = (read_tweeteval_split(args.data, split) for split in ("train", "val", "test"))
    else:
        if not (args.dev and args.test):
            raise HiclError("--train needs --dev and --test")
        train, dev, test = (read_jsonl_split(path) for path in (args.train, args.dev, args.test))
    config = FinetuneConfig(
        backbone=args.backbone, task=args.task, context=not args.no_context, template=args.template,
        learning_rate=args.lr, trigger_learning_rate=args.trigger_lr, batch_size=args.batch_size,
        group_by_length=not args.no_group_by_length, epochs=args.epochs, trigger_epochs=args.trigger_epochs,
        patience=args.patience, max_query=args.max_query,
        max_demonstration=args.max_demonstration, seeds=tuple(args.seeds), device=args.device, threads=args.threads,
        progress=not args.quiet,
    )
    report = finetune(train, dev, test, config)
    if args.json:
        print(json.dumps(report.to_dict()))
        return
    for result in report.results:
        print(f"seed {result.seed}: test {result.test:.4f}, dev {result.dev:.4f} (stage one {result.dev_stage_one:.4f}), "
              f"{result.epochs}+{result.trigger_epochs} epochs, {result.seconds:.0f} s")
    kind = "HICL" if report.context else "plain"
    print(f"{args.task} ({kind}): test {report.mean:.4f} +- {report.std:.4f} over {len(report.results)} seeds")


