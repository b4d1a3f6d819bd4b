"""Fine-tune a classifier on a task, with HICL demonstrations and trigger tokens or plainly.

The HICL recipe, per seed: stage one fine-tunes the whole classifier on ``[T..] x [T..] x' [T..]``
(`x'` the example's top retrieved post, ``text0`` of `augment`'s output), keeping the best dev
checkpoint; stage two starts from it, freezes everything and trains only the trigger tokens'
embedding rows, and the dev-best of both stages is tested. With ``context=False`` the same
code, seeds and budget fine-tune on `x` alone: the baseline. Each stage stops after
`patience` epochs without a better dev score.
"""

from __future__ import annotations

import copy
import json
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ..core import native
from ..core.config import FinetuneConfig, resolve_encoder
from ..core.errors import HiclError
from ..core.files import text_lines
from ..encoding.encoder import model_location
from ..learning.demonstrations import DemonstrationCollator, add_triggers, freeze_all_but_triggers, parse_template
from ..learning.scoring import task_score


@dataclass(frozen=True)
class Example:
    text: str
    label: int
    demonstration: str | None = None


def read_jsonl_split(path: str | Path) -> list[Example]:
    """Examples from JSON lines with ``labels`` (an integer, or a string of one) and ``text``,
    and ``text0`` (the demonstration) when `augment` wrote them."""
    path = Path(path)
    examples = []
    for number, line in text_lines(path, "task file"):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            examples.append(Example(str(row["text"]), int(row["labels"]), row.get("text0")))
        except (ValueError, KeyError, TypeError, RecursionError):
            raise HiclError(f"{path} line {number}: expected an object with an integer 'labels' and a 'text'") from None
    if not examples:
        raise HiclError(f"{path} holds no examples")
    return examples


def read_tweeteval_split(folder: str | Path, split: str) -> list[Example]:
    """Examples of the TweetEval layout: ``{split}_text.txt`` and ``{split}_labels.txt``, line by line."""
    texts_path, labels_path = Path(folder, f"{split}_text.txt"), Path(folder, f"{split}_labels.txt")
    for path in (texts_path, labels_path):
        if not path.is_file():
            raise HiclError(f"{path} does not exist (expected the TweetEval layout)")
    texts = [line for _, line in text_lines(texts_path)]
    labels = [line for _, line in text_lines(labels_path)]
    if len(texts) != len(labels):
        raise HiclError(f"{texts_path} has {len(texts)} lines but {labels_path} has {len(labels)}")
    try:
        return [Example(text, int(label)) for text, label in zip(texts, labels)]
    except ValueError:
        bad = next(number for number, label in enumerate(labels, 1) if not label.strip().lstrip("-").isdigit())
        raise HiclError(f"{labels_path} line {bad}: expected an integer label, not {labels[bad - 1]!r}") from None


@dataclass(frozen=True)
class SeedResult:
    seed: int
    dev: float
    """Dev score of the checkpoint tested (the best of both stages)."""
    dev_stage_one: float
    test: float
    epochs: int
    trigger_epochs: int
    seconds: float


@dataclass(frozen=True)
class FinetuneReport:
    task: str
    context: bool
    results: list[SeedResult]

    @property
    def mean(self) -> float:
        return sum(r.test for r in self.results) / len(self.results)

    @property
    def std(self) -> float:
        """Sample standard deviation of the test scores over seeds (0 for one seed)."""
        if len(self.results) < 2:
            return 0.0
        return math.sqrt(sum((r.test - self.mean) ** 2 for r in self.results) / (len(self.results) - 1))

    def to_dict(self) -> dict:
        return {"task": self.task, "context": self.context, "mean": self.mean, "std": self.std,
                "seeds": [r.__dict__ for r in self.results]}


def _location(backbone: str) -> str:
    path = Path(backbone).expanduser()
    if path.exists() or backbone.count("/") == 1:
        return str(path) if path.exists() else backbone
    return model_location(resolve_encoder(backbone))


def _predict(model, loader, device) -> list[int]:
    import torch

    model.eval()
    predicted = []
    with torch.inference_mode():
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items() if k != "labels"}
            predicted.extend(model(**batch).logits.argmax(dim=-1).tolist())
    return predicted


class _LengthGroupedBatches:
    """Shuffled batches of examples of similar length, so little of each batch is padding.

    Each epoch shuffles the examples, sorts windows of 50 batches by length, cuts them into
    batches and shuffles the batches: the batches still differ between epochs and seeds.
    """

    WINDOW = 50

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int) -> None:
        self.lengths, self.batch_size, self.rng = lengths, batch_size, random.Random(seed)

    def __iter__(self):
        order, window, batches = list(range(len(self.lengths))), self.WINDOW * self.batch_size, []
        self.rng.shuffle(order)
        for start in range(0, len(order), window):
            chunk = sorted(order[start : start + window], key=self.lengths.__getitem__)
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        self.rng.shuffle(batches)
        return iter(batches)

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)


class _Run:
    """One seed's model, data loaders and dev-best checkpoint."""

    def __init__(self, config: FinetuneConfig, seed: int, splits: dict[str, list[Example]], labels: int) -> None:
        import torch
        from torch.utils.data import DataLoader
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.config = config
        random.seed(seed)
        torch.manual_seed(seed)
        location = _location(config.backbone)
        self.tokenizer = AutoTokenizer.from_pretrained(location)
        self.model = AutoModelForSequenceClassification.from_pretrained(location, num_labels=labels)
        self.device = torch.device(config.device)
        count = sum(parse_template(config.template)) if config.context else 0
        self.triggers = add_triggers(self.tokenizer, self.model, count)
        self.model.to(self.device)
        collator = DemonstrationCollator(self.tokenizer, template=config.template, trigger_ids=self.triggers,
                                         max_query=config.max_query, max_demonstration=config.max_demonstration,
                                         context=config.context)
        self.loaders, self.gold = {}, {}
        for name, examples in splits.items():
            encoded = collator.encode([e.text for e in examples],
                                      [e.demonstration or "" for e in examples] if config.context else None,
                                      [e.label for e in examples])
            lengths = [len(collator.ids(e)) for e in encoded]
            if name == "train" and config.group_by_length:
                loader = DataLoader(encoded, batch_sampler=_LengthGroupedBatches(lengths, config.batch_size, seed),
                                    collate_fn=collator)
            elif name == "train":
                loader = DataLoader(encoded, batch_size=config.batch_size, shuffle=True, collate_fn=collator,
                                    generator=torch.Generator().manual_seed(seed))
            else:  # prediction order is free: sorted by length, each batch pads little
                encoded = [encoded[i] for i in sorted(range(len(encoded)), key=lengths.__getitem__)]
                loader = DataLoader(encoded, batch_size=config.batch_size, collate_fn=collator)
            self.loaders[name] = loader
            self.gold[name] = [e.label for e in encoded]
        self.best_score, self.best_state = -1.0, None

    def dev_score(self) -> float:
        return task_score(self.config.task, self.gold["dev"], _predict(self.model, self.loaders["dev"], self.device))

    def stage(self, optimizer, epochs: int, schedule=None, bar=None) -> int:
        """Train up to `epochs` epochs, keeping the dev-best weights; returns the epochs run."""
        stale = 0
        for epoch in range(1, epochs + 1):
            self.model.train()
            for batch in self.loaders["train"]:
                batch = {k: v.to(self.device) for k, v in batch.items()}
                optimizer.zero_grad(set_to_none=True)
                self.model(**batch).loss.backward()
                optimizer.step()
                if schedule is not None:
                    schedule.step()
                if bar is not None:
                    bar.update(1)
            score = self.dev_score()
            if score > self.best_score:
                self.best_score, stale = score, 0
                self.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in self.model.state_dict().items()})
            else:
                stale += 1
            if stale >= self.config.patience:
                return epoch
        return epochs

    def restore_best(self) -> None:
        self.model.load_state_dict(self.best_state)


def finetune(train: Sequence[Example], dev: Sequence[Example], test: Sequence[Example],
             config: FinetuneConfig) -> FinetuneReport:
    """Train and test one classifier per seed; the report holds each seed's dev and test scores."""
    import torch
    from transformers import get_constant_schedule_with_warmup

    if config.context:
        missing = sum(e.demonstration is None for split in (train, dev, test) for e in split)
        if missing:
            raise HiclError(f"{missing} examples have no retrieved post (text0); run `augment` on every split "
                            "first, or fine-tune without context")
    task_score(config.task, [0], [0])  # an unknown task fails here, before any training
    native.set_threads(config.threads)
    splits = {"train": list(train), "dev": list(dev), "test": list(test)}
    labels = 1 + max(e.label for split in splits.values() for e in split)
    results = []
    for seed in config.seeds:
        started = time.perf_counter()
        run = _Run(config, seed, splits, labels)
        steps = config.epochs * len(run.loaders["train"])
        optimizer = torch.optim.AdamW(run.model.parameters(), lr=config.learning_rate, weight_decay=0.01)
        schedule = get_constant_schedule_with_warmup(optimizer, round(0.1 * steps))
        with tqdm(total=steps, desc=f"seed {seed}", unit="batch", disable=not config.progress) as bar:
            epochs = run.stage(optimizer, config.epochs, schedule, bar)
        stage_one = run.best_score
        run.restore_best()
        trigger_epochs = 0
        if config.context and config.trigger_epochs:
            weight, hook = freeze_all_but_triggers(run.model, run.triggers)
            optimizer = torch.optim.AdamW([weight], lr=config.trigger_learning_rate, weight_decay=0.0)
            trigger_epochs = run.stage(optimizer, config.trigger_epochs)
            hook.remove()
            run.restore_best()
        test_score = task_score(config.task, run.gold["test"], _predict(run.model, run.loaders["test"], run.device))
        results.append(SeedResult(seed=seed, dev=run.best_score, dev_stage_one=stage_one, test=test_score,
                                  epochs=epochs, trigger_epochs=trigger_epochs,
                                  seconds=round(time.perf_counter() - started, 1)))
    return FinetuneReport(task=config.task, context=config.context, results=results)
