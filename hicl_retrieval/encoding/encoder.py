"""The topic encoder: a Hugging Face model turned into L2-normalised post vectors.

Texts are tokenised once, sorted by length and batched by a token budget (batches.py), so that
a batch pads to the length of its own posts rather than of the longest post in the corpus;
vectors are returned in input order. The model runs on the device and in the precision that
devices.py resolves; on a CPU its forward pass runs in ONNX Runtime where that gives PyTorch's vectors
(onnx_runtime.py, ``--runtime``). The same code loads the HICL #Encoder (``albertan017/hashencoder``), the packaged
MiniLM, a model directory made by training, or any hub id.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import numpy as np

from ..core.config import RUNTIMES, EncoderConfig, preset_names
from ..core.errors import HiclError
from ..core.text import normalize
from .batches import token_batches
from .devices import batch_limits, describe_device, resolve_device, resolve_dtype, torch_dtype
from .onnx_runtime import INSTALL, OnnxModel, export_key, load_onnx, runtime_version

LOG = logging.getLogger(__name__)

MIN_COSINE = 0.99999
"""How close ONNX Runtime's vectors must be to PyTorch's (the least cosine over `PROBES`) to be used."""
PROBES = (
    "Flood waters rising in #Calgary, stay safe everyone @CityofCalgary http://t.co/x1",
    "ok",
    "¿Dónde está la ayuda? 🙏🙏 #terremoto #Ecuador",
    "RT @user: The game last night was unbelievable!!! 3-2 in overtime #hockey #NHL #playoffs " * 2,
    "東京で地震がありました。皆さん大丈夫ですか",
)
"""Texts of several lengths, batched together and one alone: the padded and the single-post paths are both
compared (quickly: the check runs whenever an encoder starts)."""


def model_location(config: EncoderConfig) -> str:
    """Where the weights are: the package's directory, a local path or the hub id."""
    if config.package is None:
        return config.model
    try:
        module = importlib.import_module(config.package)
    except ImportError:
        raise HiclError(
            f"the encoder {config.preset or config.model!r} needs the Python package "
            f"{config.package!r}; install it with: pip install 'hicl-retrieval[minilm]'"
        ) from None
    return str(module.get_model_path())


def _package_version(module_name: str) -> str | None:
    for dist in metadata.packages_distributions().get(module_name, ()):
        return f"{dist}=={metadata.version(dist)}"
    return None


HUB_PROBE_SECONDS = 5.0
"""How long to wait for the Hugging Face hub before loading a hub model from the local cache only."""


def hub_reachable(timeout: float = HUB_PROBE_SECONDS) -> bool:
    """Whether the Hugging Face hub (``HF_ENDPOINT``, proxies honoured) answers within `timeout` seconds.

    Without this, transformers retries an unreachable hub with back-off for about a minute before
    it gives up; any HTTP answer, even an error, means the hub is there.
    """
    import threading
    import urllib.error
    import urllib.request

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    answer: list[bool] = []

    def probe() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout).close()
            answer.append(True)
        except urllib.error.HTTPError:
            answer.append(True)
        except (OSError, ValueError):
            answer.append(False)

    thread = threading.Thread(target=probe, daemon=True)  # name lookup ignores socket timeouts
    thread.start()
    thread.join(timeout)
    return bool(answer and answer[0])


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _load_error(config: EncoderConfig, location: str, exc: Exception, *, cache_only: bool = False) -> HiclError:
    local = Path(location).exists()
    where = f"the directory {location}" if local else f"the Hugging Face hub id {location!r}"
    if local:
        hint = "check that it holds a Hugging Face model (config.json, weights, tokenizer files)"
    else:
        reach = ("the hub cannot be reached from this machine and the model is not in the local cache"
                 if cache_only else "the hub may be unreachable from this machine")
        hint = (f"{reach}: use the offline preset '--encoder minilm', or download the model elsewhere and "
                "pass its local directory (--encoder /path/to/model, with --pooling cls|mean|pooler)")
    return HiclError(
        f"cannot load the encoder from {where} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
        f"{hint}. Known presets: {', '.join(preset_names())}"
    )


def _quantize_int8(model, device):
    """Dynamic int8 quantisation of the linear layers (weights int8, activations quantised on
    the fly): no new dependency, no export step. Faster on CPU but lossy: measure speed and
    neighbour overlap on your data with scripts/bench_encode.py."""
    import warnings

    import torch
    from torch.ao.quantization import quantize_dynamic

    if device.type != "cpu":
        raise HiclError("int8 quantisation runs on the CPU only; drop --int8 or use device cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch marks its quantised tensor types as deprecated
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def _backend_tokenizer(tokenizer, max_length: int):
    """A copy of the Rust tokenizer behind a fast Hugging Face tokenizer, set to truncate at `max_length` and not
    to pad; None for a tokenizer written in Python (BERTweet's).

    It gives the ids the Hugging Face call gives (the same tokenizer, special tokens and truncation) without
    that call's Python conversion of every post, which costs as much as tokenising a tweet (measured:
    46 against 21 us a tweet). A copy, so that other calls that set the original's truncation and padding
    (training's batches) never change it.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    from tokenizers import Tokenizer

    own = Tokenizer.from_str(backend.to_str())
    own.no_padding()
    own.enable_truncation(max_length, direction=tokenizer.truncation_side)
    own.encode_special_tokens = bool(getattr(tokenizer, "split_special_tokens", False))
    return own


class Encoder:
    """Encodes post texts into unit vectors (rows of a float32 array).

    `device` is resolved by devices.py (``auto``: the first GPU, else the CPU). `dtype` is the
    precision to run in (``auto``: by device); None keeps the precision `config` records, as
    queries of an index do. `config` then records the precision used. `runtime` runs the forward
    pass in ``torch``, in ``onnx`` (ONNX Runtime, CPU, float32) or, ``auto``, in ONNX Runtime where it is
    installed and suits the device and precision; either way ONNX Runtime is used only when its vectors
    agree with PyTorch's on `PROBES` (cosine >= `MIN_COSINE`). `runtime` then says which one runs.
    """

    def __init__(self, config: EncoderConfig, *, device: str = "auto", dtype: str | None = None,
                 runtime: str = "auto") -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        from .pooling import Pooled

        self.device = torch.device(resolve_device(device))
        precision = config.dtype if dtype is None else resolve_dtype(dtype, str(self.device))
        if config.quantize == "int8" and precision != "float32":
            raise HiclError(f"int8 quantisation starts from float32 weights; drop --int8 or --dtype {precision}")
        self.config = config = dataclasses.replace(config, dtype=precision)
        location = model_location(config)
        options = {"revision": config.revision, "trust_remote_code": config.trust_remote_code}
        cache_only = not Path(location).exists() and (_offline() or not hub_reachable())
        if cache_only:
            options["local_files_only"] = True  # no minute of retries: the local cache, or a clear error
        tokenizer_options = dict(options)
        if config.text_normalization == "bertweet":
            tokenizer_options["normalization"] = False  # done once per post by text.normalize
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(location, **tokenizer_options)
            self.model = AutoModel.from_pretrained(location, **options)
        except (OSError, ValueError, KeyError) as exc:
            raise _load_error(config, location, exc, cache_only=cache_only) from exc
        if self.tokenizer.pad_token_id is None:
            raise HiclError(f"the tokenizer of {location} has no padding token")
        if config.pooling == "pooler" and getattr(self.model, "pooler", None) is None:
            raise HiclError(f"the model {location} has no pooler layer; use --pooling cls or mean")
        self.model.to(self.device, dtype=torch_dtype(precision)).eval()
        if config.quantize == "int8":
            self.model = _quantize_int8(self.model, self.device)
        self.pooled = Pooled(self.model, config.pooling, config.normalize_vectors)
        self.backend = _backend_tokenizer(self.tokenizer, config.max_length)
        self.dim = int(self.model.config.hidden_size)
        self.model_bytes = sum(t.numel() * t.element_size() for t in (*self.model.parameters(), *self.model.buffers()))
        self.revision = (
            _package_version(config.package)
            if config.package
            else getattr(self.model.config, "_commit_hash", None)
        )
        self.onnx: OnnxModel | None = None
        self.agreement: float | None = None
        """The least cosine of ONNX Runtime's vectors to PyTorch's over `PROBES`, where it was tried."""
        self._start_onnx(runtime, location)

    @property
    def runtime(self) -> str:
        """``onnx`` where ONNX Runtime runs the forward pass, else ``torch``."""
        return "onnx" if self.onnx is not None else "torch"

    def _start_onnx(self, runtime: str, location: str) -> None:
        """Run the forward pass in ONNX Runtime where `runtime` asks for it and its vectors are PyTorch's."""
        if runtime not in RUNTIMES:
            raise HiclError(f"unknown --runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
        if runtime == "torch":
            return
        unsuitable = (
            f"it runs on the CPU only, not {self.device}" if self.device.type != "cpu"
            else f"it runs float32 only, not {self.config.dtype}" if self.config.dtype != "float32"
            else "int8 is PyTorch's quantisation; drop --int8" if self.config.quantize != "none"
            else f"ONNX Runtime is not installed; {INSTALL}" if runtime_version() is None
            else None
        )
        if unsuitable:
            if runtime == "onnx":
                raise HiclError(f"--runtime onnx: {unsuitable}")
            return
        import torch

        key = export_key(location, self.revision, self.config.pooling, self.config.normalize_vectors)
        try:
            model = load_onnx(self.pooled, key, threads=torch.get_num_threads())
        except Exception as exc:  # the exporter and ONNX Runtime raise many kinds: any of them leaves PyTorch
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            message = f"cannot run {location} in ONNX Runtime ({reason})"
            if runtime == "onnx":
                raise HiclError(f"--runtime onnx: {message}; use --runtime torch") from exc
            LOG.warning("%s; encoding with PyTorch", message)
            return
        reference = np.concatenate([self.encode(PROBES), self.encode(PROBES[:1])])
        self.onnx = model
        got = np.concatenate([self.encode(PROBES), self.encode(PROBES[:1])])
        norms = np.linalg.norm(reference, axis=1) * np.linalg.norm(got, axis=1)
        self.agreement = float(np.min((reference * got).sum(axis=1) / np.maximum(norms, 1e-12)))
        if self.agreement < MIN_COSINE:
            self.onnx = None
            message = (f"ONNX Runtime's vectors of {location} differ from PyTorch's (least cosine "
                       f"{self.agreement:.6f}, below {MIN_COSINE})")
            if runtime == "onnx":
                raise HiclError(f"--runtime onnx: {message}; use --runtime torch")
            LOG.warning("%s; encoding with PyTorch", message)

    def prepare(self, texts: Sequence[str]) -> list[str]:
        """The texts as the model reads them (the preset's normalisation applied)."""
        style = self.config.text_normalization
        return [normalize(text, style) for text in texts]

    def embed(self, texts: Sequence[str]):
        """Vectors for `texts` as a torch tensor that keeps its gradient, for training the encoder: PyTorch's, and
        `encode` then runs PyTorch too (an exported graph keeps the weights the training changes)."""
        self.onnx = None
        batch = self.tokenizer(
            self.prepare(texts), truncation=True, max_length=self.config.max_length, padding=True, return_tensors="pt"
        ).to(self.device)
        return self.pooled(batch["input_ids"], batch["attention_mask"])

    @property
    def device_name(self) -> str:
        return describe_device(str(self.device))

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of `texts` as the model reads them, truncated to ``max_length``, unpadded."""
        if not texts:
            return []
        if self.backend is not None:
            return [encoding.ids for encoding in self.backend.encode_batch(self.prepare(texts))]
        return self.tokenizer(
            self.prepare(texts), truncation=True, max_length=self.config.max_length, padding=False
        )["input_ids"]

    def batch_limits(self, max_tokens: int | None = None, batch_size: int | None = None) -> tuple[int, int | None]:
        """(tokens, posts) per batch: the given limits or the device's defaults (devices.py)."""
        return batch_limits(str(self.device), max_tokens, batch_size, self.config.max_length)

    def encode(
        self,
        texts: Sequence[str],
        *,
        batch_size: int | None = None,
        max_tokens: int | None = None,
        tokens: list[list[int]] | None = None,
        progress=None,
    ) -> np.ndarray:
        """Vectors for `texts`, shape (len(texts), dim), float32, in input order.

        Batches hold at most `batch_size` posts and `max_tokens` padded tokens (None: the
        device's defaults, see devices.py). `tokens` are the texts' token ids when already made (by
        `tokenize`, e.g. in another thread). `progress` is an optional tqdm bar advanced by
        the number of texts of each batch. On a GPU, batches go from pinned memory without
        waiting and the vectors stay there until the last batch, so the host prepares the
        next batch while the GPU computes.
        """
        import torch

        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        budget, posts = self.batch_limits(max_tokens, batch_size)
        ids = self.tokenize(texts) if tokens is None else tokens
        batches = token_batches([len(row) for row in ids], budget, posts)
        pad_id, on_gpu = self.tokenizer.pad_token_id, self.device.type == "cuda"
        vectors = []
        with torch.inference_mode():
            for chosen in batches:
                width = len(ids[chosen[0]])  # longest first
                batch = np.full((len(chosen), width), pad_id, dtype=np.int64)
                mask = np.zeros((len(chosen), width), dtype=np.int64)
                for row, i in enumerate(chosen):
                    batch[row, : len(ids[i])] = ids[i]
                    mask[row, : len(ids[i])] = 1
                if self.onnx is not None:
                    out[chosen] = self.onnx(batch, mask)
                else:
                    input_ids, attention = torch.from_numpy(batch), torch.from_numpy(mask)
                    if on_gpu:
                        input_ids, attention = input_ids.pin_memory(), attention.pin_memory()
                    input_ids = input_ids.to(self.device, non_blocking=on_gpu)
                    attention = attention.to(self.device, non_blocking=on_gpu)
                    vectors.append(self.pooled(input_ids, attention))
                if progress is not None:
                    progress.update(len(chosen))
            if vectors:
                out[[i for chosen in batches for i in chosen]] = torch.cat(vectors).cpu().numpy()
        return out
