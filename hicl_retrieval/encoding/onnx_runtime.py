"""The encoder's forward pass in ONNX Runtime: the same vectors without eager PyTorch's cost per operator.

One tweet through MiniLM is about 0.5 GFLOP of matmuls; eager PyTorch spends most of a query's
12-16 ms dispatching its hundreds of small operators, where ONNX Runtime runs the same graph,
its operators fused, in a few. The model, its pooling and the L2 normalisation are exported once
per model, settings and library versions into the user's cache (``HICL_CACHE_DIR``, else
``$XDG_CACHE_HOME/hicl-retrieval``, else ``~/.cache/hicl-retrieval``), written atomically so that
processes exporting at once never read half a file; `Encoder` checks the loaded graph's vectors
against PyTorch's before using it (encoder.py). The graph is data read by ONNX Runtime, never
Python code.

The export uses torch's TorchScript exporter: 2 s for MiniLM against 10 s for the torch.export one,
which also needs onnxscript; an export that fails leaves PyTorch in use (``--runtime auto``).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np

from ..core.errors import HiclError

EXPORT_FORMAT = 1
"""Bumped whenever what the exported graph computes changes, so that older exports are not reused."""
OPSET = 17
INSTALL = "install it with: pip install 'hicl-retrieval[onnx]'"


def cache_root() -> Path:
    configured = os.environ.get("HICL_CACHE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hicl-retrieval"


def runtime_version() -> str | None:
    """ONNX Runtime's version, None where it is not installed."""
    try:
        return metadata.version("onnxruntime")
    except metadata.PackageNotFoundError:
        return None


def _weights_fingerprint(location: str) -> list[list]:
    """Name, size and modification time of each file of a local model directory ([] for a hub id, whose
    revision names its weights): a retrained model in the same directory is exported again."""
    folder = Path(location)
    if not folder.is_dir():
        return []
    return [[entry.name, entry.stat().st_size, entry.stat().st_mtime_ns]
            for entry in sorted(folder.iterdir()) if entry.is_file()]


def export_key(location: str, revision: str | None, pooling: str, normalize: bool) -> dict:
    """What an export depends on: the model's weights, what the graph computes, and the exporting libraries."""
    import torch
    import transformers

    return {"model": location, "revision": revision, "weights": _weights_fingerprint(location),
            "pooling": pooling, "normalize": normalize, "format": EXPORT_FORMAT, "opset": OPSET,
            "torch": torch.__version__, "transformers": transformers.__version__}


def export(module, key: dict) -> Path:
    """The cached graph for `key`, exported from `module` (pooling.py's, float32 on the CPU) where not cached yet."""
    folder = cache_root() / "onnx" / hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    target = folder / "model.onnx"
    if target.is_file():
        return target
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    modes = [(part, part.training) for part in module.modules()]
    module.eval()
    example = (torch.ones((2, 8), dtype=torch.long), torch.ones((2, 8), dtype=torch.long))
    temporary = folder / f".export-{os.getpid()}-{uuid.uuid4().hex}.onnx"  # one a process: exports may race
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the tracer's notes on shapes it keeps symbolic
            torch.onnx.export(
                module, example, temporary, input_names=["input_ids", "attention_mask"], output_names=["vectors"],
                dynamic_axes={"input_ids": {0: "posts", 1: "tokens"}, "attention_mask": {0: "posts", 1: "tokens"},
                              "vectors": {0: "posts"}},
                opset_version=OPSET, dynamo=False,
            )
        (folder / "about.json").write_text(json.dumps(key, indent=1, sort_keys=True))
        os.replace(temporary, target)
    finally:
        for part, mode in modes:  # training goes on in the mode it was in
            part.training = mode
        temporary.unlink(missing_ok=True)
    return target


class OnnxModel:
    """An exported encoder graph in an ONNX Runtime session: padded token ids and mask in, vectors out.

    Sent to another process (a build's worker), it carries its file's path and opens its own session there,
    on as many threads as that process's torch uses when it first encodes."""

    def __init__(self, path: Path, threads: int) -> None:
        self.path = path
        self.session = _session(path, threads)

    def __getstate__(self) -> dict:
        return {"path": self.path}

    def __setstate__(self, state: dict) -> None:
        self.path, self.session = state["path"], None

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Vectors, (posts, dim) float32, for int64 arrays (posts, tokens)."""
        if self.session is None:
            import torch

            self.session = _session(self.path, torch.get_num_threads())
        return self.session.run(None, {"input_ids": input_ids, "attention_mask": attention_mask})[0]


def _session(path: Path, threads: int):
    try:
        import onnxruntime
    except ImportError:
        raise HiclError(f"--runtime onnx needs ONNX Runtime; {INSTALL}") from None
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: its notes on graph rewrites are not the user's business
    # Its threads spin between the operators of a run (one tweet: 3.1 against 4.3 ms p50 with them asleep) and stop
    # as the run ends: an encoding is followed in the same process by FAISS's and torch's own threads, which
    # threads spinning on would keep from the cores.
    options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    options.add_session_config_entry("session.force_spinning_stop", "1")
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def load_onnx(module, key: dict, *, threads: int) -> OnnxModel:
    """A session of the cached graph for `key`, exported first where needed; a cached file ONNX Runtime
    cannot read (a damaged cache) is exported again, once."""
    path = export(module, key)
    try:
        return OnnxModel(path, threads)
    except HiclError:
        raise
    except Exception:  # ONNX Runtime's own error types, raised for a file it cannot read
        path.unlink(missing_ok=True)
        return OnnxModel(export(module, key), threads)
