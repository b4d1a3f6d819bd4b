"""Train a topic encoder by hashtag-driven contrastive learning (the HICL #Encoder recipe).

Two posts sharing a hashtag are a positive pair and the other pairs of the batch are its
negatives (the sampler never puts a hashtag in two pairs of one batch). Each hashtag is
removed at random, the anchor's more often than the positive's, so the model learns the
topic rather than the tag string: at search time queries lose their tags, indexed posts keep
theirs. Posts without an eligible tag join each batch as extra negatives, so that they do
not drift towards every query. A held-out set of posts is never trained on; every
`eval_every` steps those posts, tags stripped, search a fixed sample of the corpus and
hashtag hit@1/hit@10/precision@10/MRR are logged. A checkpoint holds the weights, the optimiser, the schedule and every random
state, so a resumed run takes exactly the steps of one that never stopped. With `base_share`,
the base model's weights are averaged into the trained ones at the end (and that mixture is
evaluated too): on posts unlike the training corpus the trained model alone loses
neighbourhoods the base model had. The result is a Hugging Face model directory with our
preset file, usable as ``build --encoder DIR``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import random
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..core import native
from ..core.atomic import write_jsonl
from ..core.config import MODEL_PRESET_FILE, TrainConfig
from ..core.errors import HiclError
from ..core.text import DEFAULT_HASHTAG_RULE, drop_hashtags, duplicate_key, extract_hashtags, strip_hashtags
from ..corpus import Corpus, Post
from ..encoding.encoder import Encoder
from ..learning.checkpoint import Checkpoint
from ..learning.contrastive import info_nce
from ..learning.metrics import RetrievalScores, score_rankings, shares_hashtag
from ..learning.pairs import PairBatches, TagVocabulary

LOG = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pt"
HELD_OUT = "held_out.jsonl"
LOG_FILE = "training_log.jsonl"
REPORT_FILE = "training.json"
_OUTPUTS = (CHECKPOINT, HELD_OUT, LOG_FILE, REPORT_FILE, MODEL_PRESET_FILE)
EVAL_K = 10


@dataclass
class TrainingData:
    """The de-duplicated posts, their hashtags, and the split between training and held out."""

    texts: list[str]
    tags: list[list[str]]
    vocabulary: TagVocabulary
    train: list[int]
    held_out: list[int]
    eval_corpus: list[int]
    """Posts the evaluations search: every held-out post plus a fixed sample of the others."""
    read: int = 0
    rejected: Counter = field(default_factory=Counter)
    repeated: int = 0
    """Posts dropped because an earlier post has the same text (retweets and copies)."""
    hashtag_rule: str = DEFAULT_HASHTAG_RULE

    @property
    def digest(self) -> str:
        """Identifies the posts, so a resume can check it trains on the same corpus."""
        return hashlib.sha256("\n".join(self.texts).encode()).hexdigest()


def load_training_data(corpus: Corpus, config: TrainConfig) -> TrainingData:
    """Read the posts, drop copies, build the tag vocabulary and draw the held-out posts."""
    texts: list[str] = []
    seen: set[str] = set()
    read, repeated, rejected = 0, 0, Counter()
    for record in corpus:
        read += 1
        if not isinstance(record, Post):
            rejected[record.reason] += 1
            if sum(rejected.values()) <= 5:
                LOG.warning("skipped %s line %d: %s %s", record.source, record.line, record.reason, record.detail)
            continue
        key = duplicate_key(record.text)
        if key and key in seen:
            repeated += 1
            continue
        seen.add(key)
        texts.append(record.text)
    tags = [extract_hashtags(text, config.hashtag_rule) for text in texts]
    vocabulary = TagVocabulary.build(tags, min_count=config.min_count, max_share=config.max_share)
    eligible = [i for i, post_tags in enumerate(tags) if vocabulary.eligible(post_tags)]
    if config.held_out > len(eligible) // 2:
        raise HiclError(
            f"only {len(eligible)} posts carry a hashtag within the vocabulary's limits (min count "
            f"{config.min_count}, max share {config.max_share}); hold out at most half of them, "
            f"not {config.held_out} (--held-out)"
        )
    rng = random.Random(config.seed)
    held_out = sorted(rng.sample(eligible, config.held_out))
    held = set(held_out)
    train = [i for i in range(len(texts)) if i not in held]
    sample = rng.sample(train, min(len(train), max(0, config.eval_corpus - len(held_out))))
    return TrainingData(texts=texts, tags=tags, vocabulary=vocabulary, train=train, held_out=held_out,
                        eval_corpus=sorted(held_out + sample), read=read, rejected=rejected, repeated=repeated,
                        hashtag_rule=config.hashtag_rule)


def evaluate(encoder: Encoder, data: TrainingData, *, batch_size: int = 64) -> RetrievalScores:
    """Hashtag retrieval scores of the held-out posts (tags stripped) against the evaluation sample."""
    import torch

    was_training = encoder.model.training
    encoder.model.eval()
    try:
        corpus = encoder.encode([data.texts[i] for i in data.eval_corpus], batch_size=batch_size)
        queries = encoder.encode([strip_hashtags(data.texts[i], data.hashtag_rule) for i in data.held_out],
                                 batch_size=batch_size)
    finally:
        encoder.model.train(was_training)
    scores = torch.from_numpy(queries) @ torch.from_numpy(corpus).T
    position = {post: column for column, post in enumerate(data.eval_corpus)}
    scores[torch.arange(len(data.held_out)), [position[q] for q in data.held_out]] = -torch.inf  # not itself
    top = scores.topk(min(EVAL_K, len(data.eval_corpus) - 1), dim=1).indices.numpy()
    rankings = []
    for row, query in enumerate(data.held_out):
        wanted = data.vocabulary.eligible(data.tags[query])
        rankings.append([shares_hashtag(wanted, data.tags[data.eval_corpus[column]]) for column in top[row]])
    return score_rankings(rankings, k=EVAL_K)


def _loss(vectors, pairs: int, temperature: float):
    """InfoNCE of [anchors; positives; extra negatives] stacked in one tensor."""
    negatives = vectors[2 * pairs :] if len(vectors) > 2 * pairs else None
    return info_nce(vectors[:pairs], vectors[pairs : 2 * pairs], temperature, negatives=negatives)


def _train_step(encoder: Encoder, anchors: list[str], positives: list[str], config: TrainConfig,
                negatives: list[str] = ()) -> float:
    """Loss of one batch; its gradients are left in the model's parameters."""
    import torch

    texts = anchors + positives + list(negatives)
    pairs = len(anchors)
    if config.grad_cache is None or config.grad_cache >= len(texts):
        loss = _loss(encoder.embed(texts), pairs, config.temperature)
        loss.backward()
        return loss.item()
    # Gradient caching (Gao et al., 2021): vectors first without activations, the loss and its
    # gradient with respect to each vector, then each chunk again with activations, fed that
    # gradient. The dropout masks of the first pass are replayed, so the result is exact.
    chunks = [texts[start : start + config.grad_cache] for start in range(0, len(texts), config.grad_cache)]
    rng_states, parts = [], []
    with torch.no_grad():
        for chunk in chunks:
            rng_states.append(_rng_state(encoder.device))
            parts.append(encoder.embed(chunk))
    vectors = torch.cat(parts).requires_grad_()
    loss = _loss(vectors, pairs, config.temperature)
    loss.backward()
    after = _rng_state(encoder.device)
    for chunk, state, gradient in zip(chunks, rng_states, vectors.grad.split([len(c) for c in chunks])):
        _set_rng_state(encoder.device, state)
        encoder.embed(chunk).backward(gradient=gradient)
    _set_rng_state(encoder.device, after)
    return loss.item()


def _rng_state(device) -> tuple:
    """The random state dropout draws from on `device` (the CPU generator, and the GPU's if used)."""
    import torch

    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def _set_rng_state(device, state: tuple) -> None:
    import torch

    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


@dataclass
class TrainReport:
    out: Path
    steps: int
    resumed_at: int | None
    log: list[dict]
    """One row per evaluation: step, mean training loss since the last row, retrieval scores."""
    seconds: float

    def summary(self) -> str:
        resumed = f", resumed at step {self.resumed_at}" if self.resumed_at is not None else ""
        return f"{self.steps} steps in {self.seconds:.0f} s{resumed}; held-out retrieval:\n" + log_table(self.log)


def log_table(log: list[dict]) -> str:
    """The evaluations of a training log as a text table, one row per evaluation (the row of
    the weights mixed with the base model's marked with its share)."""
    lines = [f"{'step':>14} {'loss':>7} {'hit@1':>6} {'hit@10':>6} {'P@10':>6} {'MRR':>6}"]
    for row in log:
        loss = f"{row['loss']:7.3f}" if row["loss"] is not None else f"{'-':>7}"
        step = f"{row['step']} +{row['base_share']:g} base" if "base_share" in row else str(row["step"])
        lines.append(f"{step:>14} {loss} {row['hit@1']:6.3f} {row['hit@10']:6.3f} "
                     f"{row['precision@10']:6.3f} {row['mrr']:6.3f}")
    return "\n".join(lines)


def _prepare_out(out: Path, overwrite: bool) -> None:
    """Refuse to mix with another directory's files; `overwrite` clears only a training output."""
    if not out.exists():
        out.mkdir(parents=True)
        return
    if not out.is_dir():
        raise HiclError(f"--out {out} is a file, not a directory")
    entries = list(out.iterdir())
    ours = any((out / name).exists() for name in _OUTPUTS)
    if entries and not ours:
        raise HiclError(f"--out {out} is not empty and holds no training output; choose a new directory")
    if overwrite:
        for entry in entries:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    elif (out / MODEL_PRESET_FILE).exists() and not (out / CHECKPOINT).exists():
        raise HiclError(f"{out} already holds a trained encoder; pass --overwrite to train it again")


def _preset_text(config: TrainConfig, name: str) -> str:
    base = config.base
    settings = {"pooling": base.pooling, "text_normalization": base.text_normalization,
                "max_length": base.max_length, "normalize_vectors": base.normalize_vectors, "preset": name}
    lines = [f"# A topic encoder trained by hicl-retrieval train-encoder from {base.preset or base.model}.",
             "[encoder]", 'model = "."  # this directory']
    lines += [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def train_encoder(corpus_paths, out: str | Path, config: TrainConfig, *, overwrite: bool = False) -> TrainReport:
    """Train `config.base` on the hashtags of the corpus files; write the model to `out`.

    Rerunning the same command after an interruption resumes from the last checkpoint (every
    `config.checkpoint_every` steps); different settings or posts are refused.
    """
    import torch
    from transformers import get_linear_schedule_with_warmup

    started = time.perf_counter()
    out = Path(out)
    corpus = Corpus(corpus_paths, config.reader)
    _prepare_out(out, overwrite)
    native.set_threads(config.threads)
    data = load_training_data(corpus, config)
    LOG.info("%d posts (%d copies dropped), %d hashtags in the vocabulary, %d held out",
             len(data.texts), data.repeated, len(data.vocabulary.tags), len(data.held_out))
    write_jsonl(out / HELD_OUT, [{"text": data.texts[i], "hashtags": data.vocabulary.eligible(data.tags[i])}
                                  for i in data.held_out])

    torch.manual_seed(config.seed)
    encoder = Encoder(dataclasses.replace(config.base, max_length=config.max_length), device=config.device,
                      runtime="torch")
    model = encoder.model
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = get_linear_schedule_with_warmup(optimizer, round(config.warmup * config.steps), config.steps)
    state = Checkpoint.load(out / CHECKPOINT, encoder.device) if (out / CHECKPOINT).exists() else None
    if state is not None and (state.recipe != json.loads(json.dumps(config.recipe())) or state.digest != data.digest):
        raise HiclError(f"{out} holds an unfinished training with other settings or posts; "
                        "rerun it with the same ones, or pass --overwrite to start again")
    sampler = PairBatches([data.tags[i] for i in data.train], data.vocabulary, batch_size=config.batch_size,
                          seed=config.seed, tag_power=config.tag_power)
    noise = random.Random(config.seed + 1)
    negative_rng = random.Random(config.seed + 2)
    untagged = [i for i in data.train if not data.vocabulary.eligible(data.tags[i])]
    log: list[dict] = []
    step, resumed_at, earlier_seconds = 0, None, 0.0
    if state is not None:
        model.load_state_dict(state.model)
        optimizer.load_state_dict(state.optimizer)
        schedule.load_state_dict(state.schedule)
        sampler.rng.setstate(state.sampler)
        noise.setstate(state.noise)
        negative_rng.setstate(state.negatives)
        _set_rng_state(encoder.device, (state.torch, state.cuda))
        step = resumed_at = state.step
        log, earlier_seconds = state.log, state.seconds
        write_jsonl(out / LOG_FILE, log)
        LOG.info("resuming %s at step %d", out, step)

    def record(loss: float | None, **extra) -> None:
        scores = evaluate(encoder, data)
        log.append({"step": step, **extra, "loss": loss, **{k: v for k, v in scores.to_dict().items() if k != "k"},
                    "seconds": round(earlier_seconds + time.perf_counter() - started, 1)})
        write_jsonl(out / LOG_FILE, log)

    if not log:
        record(None)  # the base model's scores: where the curve starts
    model.train()
    losses: list[float] = []
    with tqdm(total=config.steps, initial=step, desc="training", unit="step", disable=not config.progress) as bar:
        while step < config.steps:
            tick = time.perf_counter()
            pairs = [(data.train[a], data.train[p]) for a, p in sampler.batch()]
            rule = config.hashtag_rule
            anchors = [drop_hashtags(data.texts[a], config.anchor_drop, noise, rule=rule) for a, _ in pairs]
            positives = [drop_hashtags(data.texts[p], config.positive_drop, noise, rule=rule) for _, p in pairs]
            negatives = [drop_hashtags(data.texts[i], config.positive_drop, noise, rule=rule)
                         for i in negative_rng.sample(untagged, min(config.untagged_negatives, len(untagged)))]
            losses.append(_train_step(encoder, anchors, positives, config, negatives))
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", pairs_s=f"{len(pairs) / (time.perf_counter() - tick):.1f}")
            if step % config.eval_every == 0 or step == config.steps:
                record(float(np.mean(losses)))
                losses = []
                model.train()
            if step % config.checkpoint_every == 0 and step < config.steps:
                torch_state, cuda_state = _rng_state(encoder.device)
                Checkpoint(
                    step=step, recipe=config.recipe(), digest=data.digest, model=model.state_dict(),
                    optimizer=optimizer.state_dict(), schedule=schedule.state_dict(), sampler=sampler.rng.getstate(),
                    noise=noise.getstate(), negatives=negative_rng.getstate(), torch=torch_state, cuda=cuda_state,
                    log=log, seconds=earlier_seconds + time.perf_counter() - started,
                ).save(out / CHECKPOINT)

    if config.base_share:
        _mix_in_base(model, config)
        record(None, base_share=config.base_share)
    model.eval()
    model.save_pretrained(out)
    encoder.tokenizer.save_pretrained(out)
    seconds = earlier_seconds + time.perf_counter() - started
    report = {
        "recipe": config.recipe(), "corpus": [str(f.path) for f in corpus.files], "read": data.read,
        "rejected": dict(data.rejected), "posts": len(data.texts), "repeated": data.repeated,
        "vocabulary": {"tags": len(data.vocabulary.tags), "too_rare": data.vocabulary.too_rare,
                       "too_common": data.vocabulary.too_common},
        "train_posts": len(data.train), "held_out": len(data.held_out), "eval_corpus": len(data.eval_corpus),
        "log": log, "seconds": round(seconds, 1),
    }
    (out / REPORT_FILE).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / MODEL_PRESET_FILE).write_text(_preset_text(config, out.resolve().name), encoding="utf-8")
    (out / CHECKPOINT).unlink(missing_ok=True)
    return TrainReport(out=out, steps=config.steps, resumed_at=resumed_at, log=log, seconds=seconds)


def _mix_in_base(model, config: TrainConfig) -> None:
    """Each weight of `model` becomes (1 - share) x trained + share x the base model's (a
    tensor tied under several names, such as shared embeddings, is mixed once)."""
    import torch

    base = Encoder(config.base, runtime="torch").model.state_dict()
    mixed = set()
    with torch.no_grad():
        for name, weight in model.state_dict().items():
            if weight.is_floating_point() and weight.data_ptr() not in mixed:
                mixed.add(weight.data_ptr())
                weight.mul_(1 - config.base_share).add_(base[name].to(weight.device), alpha=config.base_share)
