#!/usr/bin/env python3
"""Base vs +HICL fine-tuning on TweetEval stance, emotion and irony, with the packaged MiniLM backbone.

In one run, from `--data-dir` (the shared real tweets):

1. the #Database: every TweetEval tweet file (all tasks, all splits), indexed once per encoder
   with each post's file as its source. For a task, a source filter keeps out the task's own
   dev and test files (for stance, those of all five targets), so its demonstrations come from
   the other tasks' tweets and its own train split; the example itself and its copies are never
   returned (`augment`'s de-duplication).
2. `augment --top 1` of the task's train, dev and test examples with each retriever: the encoder
   trained by `scripts/compare_encoders.py` (`--encoder`), the untrained packaged MiniLM, and
   BM25 over the same posts (same exclusions, copies of the example skipped); with
   `--strip-hashtags` they search with the example's hashtags removed. `--arms adapted` adds the
   MiniLM #Database with a topic adapter learned from its own hashtags (`adapt` on a copy of the
   MiniLM index, with 256 untagged negatives as the README advises for demonstrations; the
   adapter sees every post's text and hashtags, never a label).
   Two controls bracket them
   (`--arms random oracle`): a train example of the task drawn at random, and one of the example's
   own gold label (a ceiling on a demonstration's label signal: no retriever knows a test label).
3. `finetune` of the MiniLM backbone, one run per (task, arm, seed): `base` is the plain
   fine-tuning baseline (`context=False`), the other arms the two-stage HICL recipe (template
   "050") with the demonstrations of one retriever. Every arm has the same seeds, epochs,
   lengths and learning rates.
4. A table of the official test metric per task (mean and sample standard deviation over the
   seeds), their average, and the HICL paper's published RoBERTa-base numbers for reference;
   then, for each retriever, how many test demonstrations are train examples of the task and
   how often those share the example's label (the label signal a demonstration can carry).

The budget is set by two CPU cores: an epoch of a task with demonstrations takes two to three
minutes there, so the defaults are 2 epochs of stage one and 1 of stage two at a learning
rate of 5e-5 (MiniLM is small; the paper's 1e-5 suits its 30 epochs of RoBERTa), each text
cut to 64 tokens, and 36 runs take about four hours; with a GPU (`--device cuda`) raise
`--epochs`. An encoder's #Database index is built only while some task file of its arm is
missing, so a copy of `--work-dir`'s `tasks/` is all another machine needs to fine-tune.

Every stage is kept in `--work-dir` (indexes, augmented files, one JSON per finished run) and
skipped when rerun, so an interrupted run goes on where it stopped; `--report` prints the table
of the runs finished so far. Runs go seed by seed, so a partial run still compares the arms on
equal seeds. Once the task files exist, processes with different `--seeds` may run at once:
on two cores, two with `--threads 1` each took 664 s a context run against 430 s for one
process on both cores (1.3x the runs an hour).

    python scripts/compare_encoders.py --data-dir ../shared/data     # trains the encoder first
    python scripts/hicl_tweeteval.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

from experiment_steps import HASHTAG_RULE, index, stage

from hicl_retrieval.core import native
from hicl_retrieval.core.config import AdaptConfig, FinetuneConfig
from hicl_retrieval.core.text import CopyKey, duplicate_key, strip_hashtags
from hicl_retrieval.encoding.bm25 import Bm25
from hicl_retrieval.index.directory import IndexDir
from hicl_retrieval.index.filters import Condition, Filter
from hicl_retrieval.workflows.adapt import adapt_index
from hicl_retrieval.workflows.augment import augment_file
from hicl_retrieval.workflows.finetune import SeedResult, finetune, read_jsonl_split, read_tweeteval_split

STANCE_TARGETS = ("abortion", "atheism", "climate", "feminist", "hillary")
TASKS = {"stance": [f"stance/{t}" for t in STANCE_TARGETS], "emotion": ["emotion"], "irony": ["irony"]}
SPLITS = {"train": "train", "dev": "val", "test": "test"}
ARMS = ("base", "trained", "minilm", "adapted", "bm25", "random", "oracle")
ARM_TITLES = {"base": "MiniLM alone", "trained": "+HICL trained", "minilm": "+HICL MiniLM",
              "adapted": "+HICL adapted", "bm25": "+HICL BM25", "random": "+HICL random", "oracle": "+HICL oracle"}
RETRIEVERS = ("trained", "minilm", "bm25")
DRAWN = ("random", "oracle")  # controls, not retrievers: `drawn_demonstrations`
DEFAULT_ARMS = ("base", *RETRIEVERS)
UNTAGGED_NEGATIVES = 256
"""The adapted arm's adapter prefers posts that carry hashtags (README: the topic adapter)."""
# HICL paper (Tan et al., arXiv 2308.09985), Table II, RoBERTa-base without and with HICL.
PAPER = {"stance": (69.0, 69.4), "emotion": (78.2, 78.4), "irony": (64.3, 72.8)}


def database_files(data: Path) -> list[Path]:
    return sorted((data / "tweeteval" / "datasets").rglob("*_text.txt"))


def held_back(data: Path, task: str) -> list[Path]:
    """The task's own dev and test files: never demonstrations."""
    return [data / "tweeteval" / "datasets" / folder / f"{SPLITS[split]}_text.txt"
            for folder in TASKS[task] for split in ("dev", "test")]


def write_task(data: Path, task: str, out: Path) -> dict[str, Path]:
    """The task's splits as JSON lines (stance: the five targets' examples together)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, name in SPLITS.items():
        examples = [e for folder in TASKS[task]
                    for e in read_tweeteval_split(data / "tweeteval" / "datasets" / folder, name)]
        paths[split] = out / f"{split}.jsonl"
        paths[split].write_text("".join(json.dumps({"labels": str(e.label), "text": e.text}) + "\n"
                                        for e in examples), encoding="utf-8")
    return paths


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def bm25_augment(files: list[Path], excluded: list[Path], inputs: dict[str, Path], out: Path,
                 strip_query_hashtags: bool = False) -> None:
    """Each example's top BM25 post among `files` minus `excluded`, copies of the example skipped."""
    posts: dict[str, str] = {}  # duplicate key -> text: each post once
    for path in files:
        if path not in excluded:
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    posts.setdefault(duplicate_key(line), line.strip())
    texts = list(posts.values())
    keys = [CopyKey.of(text, key, HASHTAG_RULE) for key, text in posts.items()]
    bm25 = Bm25(texts)
    for split, path in inputs.items():
        rows = _rows(path)
        queries = [strip_hashtags(row["text"], HASHTAG_RULE) if strip_query_hashtags else row["text"] for row in rows]
        found = bm25.search(queries, k=10)
        lines = []
        for row, hits in zip(rows, found):
            key = CopyKey.of(row["text"], rule=HASHTAG_RULE)
            best = next((texts[i] for _, i in hits if not key.copies(keys[i])), "")
            lines.append(json.dumps({**row, "text0": best}, ensure_ascii=False) + "\n")
        (out / f"{split}.jsonl").write_text("".join(lines), encoding="utf-8")


def drawn_demonstrations(inputs: dict[str, Path], out: Path, same_label: bool, seed: int = 0) -> None:
    """Controls that bracket the retrievers: each example's demonstration is one of the task's
    train examples drawn at random (never a copy of the example), of any label (`random`: chance
    label signal) or of the example's own gold label (`oracle`: every demonstration agrees, a
    ceiling on what a demonstration's label signal can give; no retriever can know a test label)."""
    rng = random.Random(seed)
    train = _rows(inputs["train"])
    by_label: dict[str, list[dict]] = {}
    for row in train:
        by_label.setdefault(row["labels"], []).append(row)
    for split, path in inputs.items():
        lines = []
        for row in _rows(path):
            pool = by_label[row["labels"]] if same_label else train
            key = CopyKey.of(row["text"], rule=HASHTAG_RULE)
            shown = next((pick["text"] for pick in rng.sample(pool, min(len(pool), 20))
                          if not key.copies(CopyKey.of(pick["text"], rule=HASHTAG_RULE))), "")
            lines.append(json.dumps({**row, "text0": shown}, ensure_ascii=False) + "\n")
        (out / f"{split}.jsonl").write_text("".join(lines), encoding="utf-8")


def demonstrations(data: Path, work: Path, task: str, arm: str, plain: dict[str, Path], encoders: dict[str, str],
                   threads: int | None, strip_query_hashtags: bool = False) -> Path:
    """The task's splits (`plain`, from `write_task`) with one demonstration each from `arm`'s
    retriever (kept once written). An encoder arm's #Database index is built when first needed."""
    out = work / "tasks" / task / arm
    if all((out / f"{split}.jsonl").exists() for split in SPLITS):
        return out
    if arm in DRAWN:
        out.mkdir(parents=True, exist_ok=True)
        drawn_demonstrations(plain, out, same_label=arm == "oracle")
        return out
    excluded = held_back(data, task)
    if arm == "bm25":
        out.mkdir(parents=True, exist_ok=True)
        bm25_augment(database_files(data), excluded, plain, out, strip_query_hashtags)
        return out
    encoder = encoders[arm]
    if arm == "trained" and not Path(encoder).is_dir():
        raise SystemExit(f"no trained encoder at {encoder}: run scripts/compare_encoders.py first, "
                         "or pass --encoder DIR")
    database = (adapted_database(data, work) if arm == "adapted"
                else index(database_files(data), work / f"db-{arm}", encoder))
    keep_out = Filter.of(Condition("source", "not_in", tuple(str(p) for p in excluded)))
    out.mkdir(parents=True, exist_ok=True)
    for split, path in plain.items():
        augment_file(database, path, out / f"{split}.jsonl", top=1, strip_query_hashtags=strip_query_hashtags,
                     filter=keep_out, threads=threads)
    return out


def adapted_database(data: Path, work: Path) -> Path:
    """A copy of the MiniLM #Database with a topic adapter learned from its posts' hashtags (kept)."""
    out = work / "db-adapted"
    if out.is_dir() and IndexDir(out).read_manifest().adapter:
        return out
    if not out.is_dir():
        plain = index(database_files(data), work / "db-minilm", "minilm")
        shutil.copytree(plain, out.with_suffix(".copying"), dirs_exist_ok=True)
        out.with_suffix(".copying").rename(out)
    report = adapt_index(out, AdaptConfig(untagged_negatives=UNTAGGED_NEGATIVES, progress=False))
    print(report.summary(), flush=True)
    if not report.applied:
        raise SystemExit(f"the adapter was not applied, so the adapted arm would equal the MiniLM one: {report.reason}")
    return out


def _setting(config: dict) -> dict:
    """What makes two runs the same experiment: not the number of CPU threads."""
    return {key: value for key, value in config.items() if key != "threads"}


def run(folder: Path | None, task: str, arm: str, seed: int, config: FinetuneConfig, result: Path) -> SeedResult:
    """One fine-tuning run in `folder`, or its saved result."""
    config = replace(config, task=task, context=arm != "base", seeds=(seed,))
    if result.exists():
        saved = json.loads(result.read_text())
        if _setting(saved["config"]) != _setting(json.loads(json.dumps(config.__dict__, default=str))):
            raise SystemExit(f"{result} was run with other settings; move the results away or use another --work-dir")
        return SeedResult(**saved["result"])
    splits = [read_jsonl_split(folder / f"{split}.jsonl") for split in SPLITS]
    report = finetune(*splits, config)
    result.parent.mkdir(parents=True, exist_ok=True)
    result.write_text(json.dumps({"task": task, "arm": arm, "config": config.__dict__,
                                  "result": report.results[0].__dict__}, default=str, indent=1))
    return report.results[0]


def cell(scores: list[float], sign: str = "") -> str:
    """Mean ± sample standard deviation x100, and how many seeds."""
    if not scores:
        return "-"
    spread = statistics.stdev(scores) if len(scores) > 1 else 0.0
    return f"{100 * statistics.mean(scores):{sign}5.1f} ± {100 * spread:3.1f} ({len(scores)})"


def average_by_seed(results: dict[tuple[str, str], dict[int, float]], arm: str, tasks: list[str]) -> dict[int, float]:
    """`arm`'s average over `tasks` for each seed run on all of them."""
    runs = [results.get((task, arm), {}) for task in tasks]
    return {seed: statistics.mean(r[seed] for r in runs) for seed in sorted(set.intersection(*(set(r) for r in runs)))}


def table(results: dict[tuple[str, str], dict[int, float]], tasks: list[str]) -> str:
    """Mean ± standard deviation (over seeds) of the test metric, x100, and the paper's numbers."""
    arms = [arm for arm in ARMS if arm in DEFAULT_ARMS or any(a == arm for _, a in results)]
    header = f"{'task':9}" + "".join(f"{ARM_TITLES[a]:>19}" for a in arms) + "   paper RoBERTa / +HICL"
    lines = [header]
    for task in tasks:
        lines.append(f"{task:9}" + "".join(f"{cell(list(results.get((task, a), {}).values())):>19}" for a in arms)
                     + f"   {PAPER[task][0]:.1f} / {PAPER[task][1]:.1f}")
    averages, gains = [], []
    base = average_by_seed(results, "base", tasks)
    for arm in arms:
        average = average_by_seed(results, arm, tasks)
        averages.append(cell(list(average.values())))
        # paired by seed: the seeds' spread of the average does not hide a steady gain
        gains.append(cell([average[seed] - base[seed] for seed in average if seed in base], "+")
                     if arm != "base" else "")
    paper = [statistics.mean(PAPER[t][i] for t in tasks) for i in (0, 1)]
    lines.append(f"{'average':9}" + "".join(f"{c:>19}" for c in averages) + f"   {paper[0]:.1f} / {paper[1]:.1f}")
    lines.append(f"{'vs base':9}" + "".join(f"{c:>19}" for c in gains) + f"   {paper[1] - paper[0]:+.1f}")
    if "adapted" in arms:  # the adapter's own effect: the same retriever without it, paired by seed
        plain, adapted = average_by_seed(results, "minilm", tasks), average_by_seed(results, "adapted", tasks)
        paired = cell([adapted[seed] - plain[seed] for seed in adapted if seed in plain], "+")
        lines.append(f"{'vs MiniLM':9}" + "".join(f"{paired if arm == 'adapted' else '':>19}" for arm in arms))
    return "\n".join(lines)


def label_agreement(train: Path, augmented: Path) -> tuple[float, float, float]:
    """Of `augmented`'s examples, the share whose demonstration is one of the task's `train`
    examples (or a copy of one), how often that one has the example's label, and how often a
    train example drawn at random would: how much label signal a retriever hands the classifier."""
    labels: dict[str, str] = {}
    for row in _rows(train):
        if key := duplicate_key(row["text"]):  # a text of mentions and links alone has no key
            labels.setdefault(key, row["labels"])
    rows = _rows(augmented)
    shown = [(row["labels"], labels.get(duplicate_key(row["text0"]))) for row in rows]
    found = [(label, theirs) for label, theirs in shown if theirs is not None]
    prior = Counter(labels.values())
    chance = sum(prior[row["labels"]] for row in rows) / (len(rows) * len(labels))
    same = sum(label == theirs for label, theirs in found) / len(found) if found else float("nan")
    return len(found) / len(rows), same, chance


def agreement_table(work: Path, tasks: list[str], split: str = "test") -> str:
    """`label_agreement` of each task's `split` for each retriever whose files exist."""
    arms = [arm for arm in ARMS if arm in RETRIEVERS or any((work / "tasks" / t / arm).is_dir() for t in tasks)]
    lines = [f"{'task':9}{'chance':>7}" + "".join(f"{ARM_TITLES[a]:>22}" for a in arms)]
    for task in tasks:
        folder = work / "tasks" / task
        cells, chance = [], "-"
        for arm in arms:
            if (folder / arm / f"{split}.jsonl").exists():
                found, same, rate = label_agreement(folder / "plain" / "train.jsonl", folder / arm / f"{split}.jsonl")
                cells.append(f"{found:.2f} in train, {same:.2f}")
                chance = f"{rate:.2f}"
            else:
                cells.append("-")
        lines.append(f"{task:9}{chance:>7}" + "".join(f"{c:>22}" for c in cells))
    return "\n".join(lines)


def check_work_dir(work: Path, settings: dict) -> None:
    """Record the settings that shape `work`'s demonstrations; refuse others, which would reuse
    (or mix with) demonstrations and results made under the recorded ones."""
    path = work / "demonstrations.json"
    if not path.exists():  # task files made before the choice existed were searched with hashtags
        first = {"strip_hashtags": False} if (work / "tasks").exists() else settings
        path.write_text(json.dumps(first) + "\n", encoding="utf-8")
    if (saved := json.loads(path.read_text(encoding="utf-8"))) != settings:
        raise SystemExit(f"{work} holds demonstrations made with {saved}, not {settings}; use another --work-dir")


def prepare(data: Path, work: Path, args: argparse.Namespace) -> dict[tuple[str, str], Path]:
    """Every (task, arm)'s folder of train/dev/test files."""
    encoders = {"minilm": "minilm", "adapted": "minilm", "trained": args.encoder}
    folders = {}
    for task in args.tasks:
        plain = write_task(data, task, work / "tasks" / task / "plain")
        for arm in args.arms:
            folders[task, arm] = (plain["train"].parent if arm == "base"
                                  else demonstrations(data, work, task, arm, plain, encoders, args.threads,
                                                      args.strip_hashtags))
    return folders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data", help="folder holding tweeteval/")
    parser.add_argument("--work-dir", default="/tmp/hicl-finetune", help="indexes, task files and results (kept)")
    parser.add_argument("--encoder", default="/tmp/hicl-tweeteval/minilm-hashtag",
                        help="the trained topic encoder (default: scripts/compare_encoders.py's)")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--arms", nargs="+", default=list(DEFAULT_ARMS), choices=list(ARMS),
                        help="base, the retrievers' +HICL arms (default: these four), adapted (the MiniLM "
                             "index with a topic adapter), and two controls: random (a random train example) and oracle (a train example of the gold label)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=2, help="stage one epochs (default: 2)")
    parser.add_argument("--trigger-epochs", type=int, default=1, help="stage two epochs (default: 1)")
    parser.add_argument("--lr", type=float, default=5e-5, help="stage one learning rate (default: 5e-5)")
    parser.add_argument("--max-length", type=int, default=64, help="tokens of x and of x', each (default: 64)")
    parser.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    parser.add_argument("--device", default="cpu", help="where to fine-tune: cpu, cuda (default: cpu)")
    parser.add_argument("--strip-hashtags", action="store_true",
                        help="search with each example's hashtags removed (kept in the classifier's input); "
                             "a work directory holds one choice")
    parser.add_argument("--report", action="store_true",
                        help="print the table of the runs finished so far; build and train nothing")
    args = parser.parse_args()
    started = time.perf_counter()
    native.set_threads(args.threads)
    # absolute paths: the sources stored in the indexes must match the exclusion filters
    data, work = Path(args.data_dir).resolve(), Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    check_work_dir(work, {"strip_hashtags": args.strip_hashtags})
    folders = {}
    if not args.report:
        folders = prepare(data, work, args)
        stage(f"demonstrations from {len(database_files(data))} TweetEval files", started)

    config = FinetuneConfig(backbone="minilm", task=args.tasks[0], epochs=args.epochs,
                            trigger_epochs=args.trigger_epochs, learning_rate=args.lr,
                            max_query=args.max_length, max_demonstration=args.max_length,
                            threads=args.threads, device=args.device, progress=False)
    results: dict[tuple[str, str], dict[int, float]] = {}
    for seed in args.seeds:
        for task in args.tasks:
            for arm in args.arms:
                path = work / "results" / f"{task}-{arm}-{seed}.json"
                if args.report and not path.exists():
                    continue
                result = run(folders.get((task, arm)), task, arm, seed, config, path)
                results.setdefault((task, arm), {})[seed] = result.test
                print(f"  {task:8} {arm:8} seed {seed}: test {100 * result.test:.1f}, dev {100 * result.dev:.1f} "
                      f"({result.epochs}+{result.trigger_epochs} epochs, {result.seconds:.0f} s)", flush=True)
        if not args.report:
            stage(f"seed {seed}", started)
    print("\n## Test score x100, mean ± standard deviation (seeds); stance: mean F1 of against and favor, "
          "emotion: macro-F1, irony: F1 of the ironic class")
    print(table(results, args.tasks))
    print("\n## Test examples whose demonstration is a train example of the task, and the share of those "
          "with the example's label (chance: a random train example's)")
    print(agreement_table(work, args.tasks))


if __name__ == "__main__":
    main()
