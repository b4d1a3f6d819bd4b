"""Typed settings: encoder presets (TOML files in ``configs/``), reader and build options."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .bounds import COUNT, MEMORY, OPTIONAL_COUNT, POSITIVE, RECALL, SHARE, THREADS, Bounds, check_fields, setting
from .errors import HiclError
from .files import check_name
from .text import DEFAULT_HASHTAG_RULE, check_hashtag_rule
from .times import check_time_format

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

POOLINGS = ("cls", "mean", "pooler")
TEXT_NORMALIZATIONS = ("none", "bertweet")
QUANTIZATIONS = ("none", "int8")
PRECISIONS = ("float32", "float16", "bfloat16")
RUNTIMES = ("auto", "torch", "onnx")
# A model directory carrying this file brings its own preset (pooling, normalisation, ...).
MODEL_PRESET_FILE = "hicl-encoder.toml"


@dataclass(frozen=True)
class EncoderConfig:
    """How to turn a post into a vector; recorded in the manifest so queries match the corpus."""

    model: str
    """Hugging Face hub id or local directory."""
    pooling: str = "mean"
    text_normalization: str = "none"
    max_length: int = setting(128, Bounds(low=2, integer=True))
    normalize_vectors: bool = True
    package: str | None = None
    """A Python package that ships the weights (its ``get_model_path()`` gives the directory)."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) to load."""
    preset: str | None = None
    """Name of the preset this came from, for display."""
    trust_remote_code: bool = False
    quantize: str = "none"
    """``int8``: dynamic int8 quantisation of the linear layers, for faster CPU encoding."""
    dtype: str = "float32"
    """The precision the model ran in (``--dtype``); an index's queries run in the same."""

    def __post_init__(self) -> None:
        check_fields(self)
        if self.pooling not in POOLINGS:
            raise HiclError(f"unknown pooling {self.pooling!r}; choose one of {', '.join(POOLINGS)}")
        if self.text_normalization not in TEXT_NORMALIZATIONS:
            raise HiclError(
                f"unknown text_normalization {self.text_normalization!r}; "
                f"choose one of {', '.join(TEXT_NORMALIZATIONS)}"
            )
        if self.quantize not in QUANTIZATIONS:
            raise HiclError(f"unknown quantize {self.quantize!r}; choose one of {', '.join(QUANTIZATIONS)}")
        if self.dtype not in PRECISIONS:
            raise HiclError(f"unknown dtype {self.dtype!r}; choose one of {', '.join(PRECISIONS)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "encoder settings") -> EncoderConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise HiclError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        if "model" not in data:
            raise HiclError(f"{where}: missing the required key 'model'")
        return cls(**data)


def preset_names() -> list[str]:
    return sorted(p.name[: -len(".toml")] for p in _preset_dir().iterdir() if p.name.endswith(".toml"))


def _preset_dir() -> Path:
    """The presets: ``configs/`` beside the package in a checkout, inside it once installed."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "configs", package.parent / "configs"):
        if (candidate / "hashencoder.toml").is_file():
            return candidate
    raise HiclError(f"the encoder presets are missing (looked for {package.parent / 'configs'}); reinstall the package")


def _load_toml(text: str, where: str) -> dict[str, Any]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise HiclError(f"{where}: not valid TOML ({exc})") from None
    if "encoder" not in data or not isinstance(data["encoder"], dict):
        raise HiclError(f"{where}: expected an [encoder] table")
    return data["encoder"]


def resolve_encoder(spec: str, *, pooling: str | None = None) -> EncoderConfig:
    """Turn ``--encoder NAME|PATH`` (and an optional ``--pooling``) into settings.

    In order: a preset name from ``configs/``; a ``.toml`` preset file; a model directory
    with its own ``hicl-encoder.toml``; any other local directory or a hub id, pooled with
    `pooling` (default ``mean``).
    """
    check_name(spec, "encoder")
    path = Path(spec).expanduser()
    if path.exists():  # safetensors and the manifest take only UTF-8 paths, as the folder resolves
        check_name(path.resolve(), "encoder folder" if path.is_dir() else "encoder file")
    if "/" not in spec and (_preset_dir() / f"{spec}.toml").is_file():
        settings = _load_toml((_preset_dir() / f"{spec}.toml").read_text(), f"preset {spec!r}")
        settings.setdefault("preset", spec)
    elif path.suffix == ".toml":
        if not path.is_file():
            raise HiclError(f"encoder preset file {spec} does not exist")
        settings = _load_toml(path.read_text(), str(path))
        settings.setdefault("preset", path.stem)
    elif path.is_dir() and (path / MODEL_PRESET_FILE).is_file():
        settings = _load_toml((path / MODEL_PRESET_FILE).read_text(), str(path / MODEL_PRESET_FILE))
        settings["model"] = str(path.resolve())
    elif path.is_dir():
        settings = {"model": str(path.resolve())}
    elif spec.count("/") == 1 and not spec.startswith((".", "/", "~")):
        settings = {"model": spec}
    else:
        raise HiclError(
            f"unknown encoder {spec!r}: not a preset ({', '.join(preset_names())}), "
            "a .toml preset file, a model directory or a hub id like 'owner/name'"
        )
    if pooling is not None:
        settings["pooling"] = pooling
    return EncoderConfig.from_dict(settings, where=f"encoder {spec!r}")


@dataclass(frozen=True)
class ReaderConfig:
    """How to read corpus files. Column names left as None are detected from common names."""

    format: str = "auto"
    text_col: str | None = None
    id_col: str | None = None
    author_col: str | None = None
    time_col: str | None = None
    delimiter: str | None = None
    max_record_bytes: int = setting(1 << 20, COUNT)
    """A line (or CSV record) longer than this is rejected without being held in memory."""
    time_format: str | None = None
    """How the time column is written when it is not detected: a strptime format such as
    ``%d/%m/%Y %H:%M``, or ``unix`` / ``unix_ms``; None reads ISO 8601, the Twitter format and
    Unix seconds (see times.py)."""

    def __post_init__(self) -> None:
        check_fields(self)
        check_time_format(self.time_format)


@dataclass(frozen=True)
class DeviceConfig:
    """Where and how the encoder runs: device, precision and batches (encoding/devices.py)."""

    device: str = "auto"
    """auto (the first GPU, else the CPU), cpu, cuda, cuda:N or mps."""
    dtype: str = "auto"
    """auto, float32, float16 or bfloat16. Building, auto is by device; adding to or querying an
    index, auto is the precision the index records, and another one is refused."""
    batch_size: int | None = setting(None, OPTIONAL_COUNT)
    """Posts per batch at most; None: the device's default (64 on a CPU, no limit on a GPU)."""
    max_tokens_per_batch: int | None = setting(None, OPTIONAL_COUNT)
    """Padded tokens per batch at most; None: the device's default."""
    runtime: str = "auto"
    """What runs the model: torch, onnx (ONNX Runtime, CPU, float32) or auto (ONNX Runtime where it is installed
    and suits the device and precision); ONNX Runtime only where its vectors are PyTorch's (encoding/encoder.py)."""

    def __post_init__(self) -> None:
        check_fields(self)
        if self.runtime not in RUNTIMES:
            raise HiclError(f"unknown --runtime {self.runtime!r}; choose one of {', '.join(RUNTIMES)}")


@dataclass(frozen=True)
class RayConfig:
    """Encoding in a pool of Ray actors (encoding/ray_workers.py); the driver reads and writes the index."""

    address: str = "auto"
    """auto: the cluster ``ray start`` made here or RAY_ADDRESS, else a new local one; local: a new
    local one; else a cluster's address (``HOST:PORT`` or ``ray://HOST:PORT``)."""
    workers: int | None = setting(None, OPTIONAL_COUNT)
    """Actors; None: one per GPU of the cluster (by `gpus_per_worker`), else one per `threads` CPUs."""
    gpus_per_worker: float | None = setting(None, Bounds(low=0, optional=True))
    """None: 1 where the cluster has GPUs (and the device is not cpu), else 0."""
    threads: int | None = setting(None, THREADS)
    """CPU threads of each actor's torch; None: 1 with no GPU, else 2."""
    cpus: int | None = setting(None, OPTIONAL_COUNT, option="ray_cpus")
    """CPUs of a new local cluster (``--ray-cpus``); None: every core."""

    def __post_init__(self) -> None:
        check_fields(self)
        if not str(self.address).strip():
            raise HiclError("--ray: give auto, local or a cluster address")


@dataclass(frozen=True)
class BuildConfig:
    """Everything `build_index` needs besides the corpus paths and the output directory."""

    encoder: EncoderConfig
    reader: ReaderConfig = field(default_factory=ReaderConfig)
    faiss_factory: str = "auto"
    """auto, flat, hnsw, ivf, ivfpq or a FAISS factory string (see planning.py)."""
    max_memory: int | None = setting(None, MEMORY)
    """RAM budget in bytes for building and searching the index; None: the machine's memory."""
    target_recall: float = setting(0.95, RECALL)
    """Recall@10 against exact search that an approximate index's search is tuned to reach."""
    chunk_size: int = setting(4096, COUNT)
    """Posts read, encoded and stored together; bounds the build's memory."""
    encoding: DeviceConfig = field(default_factory=DeviceConfig)
    ray: RayConfig | None = None
    """Encode in a Ray cluster instead of in this process."""
    workers: int | None = setting(None, OPTIONAL_COUNT)
    """Worker processes, each turning shards of the corpus into segments (workflows/sharded_build.py);
    None: one a core (at most 4 on a GPU) for a corpus of 100,000 records or more, else one, and one where
    `build_index` is given an encoder object (sent to the workers only when asked). A corpus of one shard is
    built in this process."""
    shard_bytes: int | None = setting(None, OPTIONAL_COUNT)
    """Bytes of a shard of a large uncompressed file of lines; None: about four shards a worker, 1-256 MiB."""
    threads: int | None = setting(None, THREADS)
    """CPU threads of torch and FAISS in all (shared out among the workers)."""
    hashtag_rule: str = DEFAULT_HASHTAG_RULE
    """How hashtags are extracted from posts (``twitter`` or ``hicl``, see text.py); the manifest records it."""
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        check_fields(self)
        check_hashtag_rule(self.hashtag_rule)
        if self.ray is not None and self.workers is not None:
            raise HiclError("workers are local processes; with Ray, give the Ray workers as RayConfig(workers=...)")


@dataclass(frozen=True)
class TrainConfig:
    """Hashtag-driven contrastive training of a topic encoder (see training.py for the recipe)."""

    base: EncoderConfig
    reader: ReaderConfig = field(default_factory=ReaderConfig)
    steps: int = setting(1000, COUNT)
    batch_size: int = setting(64, Bounds(low=2, integer=True))
    """Positive pairs a step (2x as many posts); the other pairs are each pair's negatives
    (in-batch negatives need at least two pairs)."""
    grad_cache: int | None = setting(None, Bounds(low=1, integer=True, optional=True))
    """Posts encoded at once when set: the whole batch's loss with one chunk's activations in
    memory at a time (gradient caching), so `batch_size` can exceed what fits in memory."""
    learning_rate: float = setting(5e-5, POSITIVE, option="lr")
    warmup: float = setting(0.1, SHARE)
    """Share of the steps over which the learning rate rises linearly from 0 (then decays to 0)."""
    weight_decay: float = setting(0.01, Bounds(low=0))
    temperature: float = setting(0.05, POSITIVE)
    anchor_drop: float = setting(0.9, SHARE)
    """Probability of removing each hashtag of the anchor: queries are searched without their tags."""
    positive_drop: float = setting(0.3, SHARE)
    """Probability of removing each hashtag of the positive: indexed posts keep theirs."""
    max_length: int = setting(64, Bounds(low=2, integer=True))
    """Tokens a post is cut to in training (tweets rarely need more)."""
    min_count: int = setting(2, COUNT)
    max_share: float = setting(0.01, SHARE)
    tag_power: float = setting(1.0, Bounds(low=0))
    """Tags are drawn for pairs with probability proportional to their posts ** tag_power
    (1: by posts, frequent tags dominate; 0: every tag alike, specific tags weigh more)."""
    untagged_negatives: int = setting(32, Bounds(low=0, integer=True))
    """Posts without an eligible hashtag added to each batch as extra negatives for the anchors:
    they are most of a corpus, and a model trained on tagged posts alone lets them drift
    close to every query."""
    base_share: float = setting(0.5, SHARE)
    """Share of the base model in the weights written: each becomes (1 - share) x trained +
    share x base (weight-space ensembling, Wortsman et al. 2022). A model trained on one corpus
    forgets how to place posts unlike it; the mixture keeps more of the base's neighbourhoods
    (trained on TweetEval: 0.5 kept its held-out gain and won back most of what the trained
    model alone lost on CrisisLexT26; 0 writes the trained weights)."""
    held_out: int = setting(2000, COUNT)
    """Posts with an eligible hashtag kept out of training: the queries of the evaluations."""
    eval_every: int = setting(250, COUNT)
    eval_corpus: int = setting(10000, COUNT)
    """Posts searched by the evaluations during training: the held-out ones plus a sample."""
    checkpoint_every: int = setting(250, COUNT)
    seed: int = setting(0, Bounds(integer=True))
    hashtag_rule: str = DEFAULT_HASHTAG_RULE
    """How hashtags are extracted: which posts are pairs, and what the noise removes."""
    device: str = "cpu"
    threads: int | None = setting(None, THREADS)
    progress: bool = True

    def __post_init__(self) -> None:
        check_fields(self)
        check_hashtag_rule(self.hashtag_rule)
        if self.base.quantize != "none":
            raise HiclError("an int8-quantised encoder cannot be trained; train the full-precision model")

    def recipe(self) -> dict[str, Any]:
        """The settings that shape the trained weights (a resumed run must share them all)."""
        skip = {"reader", "eval_every", "eval_corpus", "checkpoint_every", "device", "threads", "progress"}
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip}
        data["base"] = self.base.to_dict()
        return data


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning a classifier on a task, plainly or with HICL demonstrations (see finetune.py)."""

    backbone: str
    """Any model AutoModelForSequenceClassification loads: a hub id, a directory, or an encoder preset."""
    task: str
    context: bool = True
    """False: the plain fine-tuning baseline (no demonstration, no triggers, no stage two)."""
    template: str = "050"
    learning_rate: float = setting(2e-5, POSITIVE, option="lr")
    trigger_learning_rate: float = setting(1e-3, POSITIVE, option="trigger_lr")
    """Stage two trains only the trigger embeddings, a few hundred numbers: they take a larger step."""
    batch_size: int = setting(16, COUNT)
    group_by_length: bool = True
    """Batch training examples of similar length together (less padding, same examples an epoch)."""
    epochs: int = setting(10, COUNT)
    trigger_epochs: int = setting(5, Bounds(low=0, integer=True))
    patience: int = setting(3, COUNT)
    """Stop a stage after this many epochs without a better dev score."""
    max_query: int = setting(128, COUNT)
    max_demonstration: int = setting(128, COUNT)
    seeds: tuple[int, ...] = (0, 1, 2)
    device: str = "cpu"
    threads: int | None = setting(None, THREADS)
    progress: bool = True

    def __post_init__(self) -> None:
        check_fields(self)
        if not self.seeds:
            raise HiclError("give at least one seed")


@dataclass(frozen=True)
class AdaptConfig:
    """Learning a topic adapter from an index's own hashtags (see workflows/adapt.py for the recipe)."""

    rank: int = setting(64, COUNT)
    """Rank of the residual map: 64 gained as much as 128 and more than 16 or a full-rank map on TweetEval."""
    steps: int = setting(3000, COUNT)
    """At most this many optimiser steps; training stops earlier when validation stops improving."""
    batch_size: int = setting(256, Bounds(low=2, integer=True), option="anchors_per_step")
    untagged_negatives: int = setting(0, Bounds(low=0, integer=True))
    """Posts without an eligible hashtag added to each step as negatives of every anchor (stored vectors:
    nothing to encode)."""
    learning_rate: float = setting(1e-3, POSITIVE, option="lr")
    temperature: float = setting(0.05, POSITIVE)
    sample: int = setting(30000, COUNT)
    """Posts with an eligible hashtag encoded without it as training anchors (the cost of `adapt`: each is
    encoded once)."""
    held_out: int = setting(2000, COUNT)
    """Posts with an eligible hashtag that judge the adapter and are never trained on (at most a fifth)."""
    validation: int = setting(2000, COUNT)
    """Posts with an eligible hashtag that choose the step to keep (at most a fifth); never trained on."""
    check_every: int = setting(200, COUNT)
    """Steps between validation checks, each a search of the validation posts through the index."""
    patience: int = setting(4, COUNT)
    """Stop after this many checks of the validation posts without a better hit@10."""
    min_count: int = setting(2, COUNT)
    max_share: float = setting(0.01, SHARE)
    seed: int = setting(0, Bounds(integer=True))
    threads: int | None = setting(None, THREADS)
    progress: bool = True

    def __post_init__(self) -> None:
        check_fields(self)
