"""Where the encoder runs and in what precision: ``--device`` and ``--dtype`` resolved once, here.

``auto`` takes the first GPU there is (CUDA, else Apple's MPS), else the CPU. The precision of
``auto`` is bfloat16 on a GPU that supports it, else float16 on a GPU, and float32 on a CPU,
where half precision is several times slower than float32. The precision an index was encoded
in is recorded with its encoder settings, so queries are encoded the same way.
"""

from __future__ import annotations

from ..core.bounds import OPTIONAL_COUNT, check
from ..core.config import PRECISIONS
from ..core.errors import HiclError

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
BATCH_LIMITS = {"cpu": (2048, 64), "cuda": (65536, None), "mps": (16384, None)}
"""Default (tokens, posts) per encoder batch by device type, tokens counted padded. A GPU is kept
busy by large batches; on a CPU larger batches than about 64 tweets gain nothing (they leave
the caches; scripts/bench_encode.py measures it)."""


def resolve_device(spec: str = "auto") -> str:
    """The torch device `spec` names, checked to exist here: ``cpu``, ``cuda:N`` or ``mps``."""
    import torch

    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return "cuda:0"
        return "mps" if _mps_available() else "cpu"
    if spec == "cpu":
        return "cpu"
    if spec == "mps":
        if not _mps_available():
            raise HiclError("--device mps: no Apple GPU is available to this torch; use --device cpu or auto")
        return "mps"
    if spec == "cuda" or spec.startswith("cuda:"):
        number = spec.partition(":")[2] or "0"
        if not number.isdigit():
            raise HiclError(f"--device {spec}: write cuda:N with N a GPU number, e.g. cuda:0")
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
            raise HiclError(f"--device {spec}: no CUDA GPU is visible (torch {torch.__version__}, {build}); "
                            "use --device cpu or auto")
        if int(number) >= torch.cuda.device_count():
            raise HiclError(f"--device {spec}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                            f"numbered from 0")
        return f"cuda:{int(number)}"
    raise HiclError(f"unknown --device {spec!r}; choose one of {', '.join(DEVICES)}")


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def resolve_dtype(spec: str, device: str) -> str:
    """The precision `spec` names on `device` (a resolved device): one of `PRECISIONS`."""
    import torch

    spec = (spec or "auto").strip().lower()
    aliases = {"fp32": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16"}
    spec = aliases.get(spec, spec)
    if spec == "auto":
        if device.startswith("cuda"):
            return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        return "float16" if device == "mps" else "float32"
    if spec not in PRECISIONS:
        raise HiclError(f"unknown --dtype {spec!r}; choose one of auto, {', '.join(PRECISIONS)}")
    return spec


def torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def batch_limits(device: str, max_tokens: int | None, max_posts: int | None, max_length: int
                 ) -> tuple[int, int | None]:
    """(tokens, posts) per batch on `device`: the given limits, the device's defaults for None.

    The token budget must hold a post of the encoder's `max_length`, the longest there can be.
    """
    tokens, posts = BATCH_LIMITS[device.partition(":")[0]]
    tokens, posts = (tokens if max_tokens is None else max_tokens), (posts if max_posts is None else max_posts)
    check_batch_limits(tokens, posts, max_length)
    return tokens, posts


def check_batch_limits(max_tokens: int | None, max_posts: int | None, max_length: int) -> None:
    """Refuse limits no batch can keep (run before loading a model: the defaults always pass)."""
    check("--batch-size", max_posts, OPTIONAL_COUNT)
    check("--max-tokens-per-batch", max_tokens, OPTIONAL_COUNT)
    if max_tokens is not None and max_tokens < max_length:
        raise HiclError(f"--max-tokens-per-batch must be at least the encoder's max_length {max_length} "
                        f"(a post of that length must fit a batch), not {max_tokens}")


def describe_device(device: str) -> str:
    """The device with its name, for reports: ``cuda:0 (NVIDIA H200)``, ``cpu (2 threads)``."""
    import torch

    if device.startswith("cuda"):
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    if device == "cpu":
        threads = torch.get_num_threads()
        return f"cpu ({threads} thread{'s' if threads != 1 else ''})"
    return device


def check_index_dtype(recorded: str, asked: str, index: str) -> None:
    """Refuse to encode for an index in another precision than its vectors were made in."""
    if (asked or "auto").strip().lower() == "auto":
        return
    wanted = resolve_dtype(asked, "cpu")  # an explicit name means the same on every device
    if wanted != recorded:
        raise HiclError(f"{index} was encoded in {recorded}; encoding in {wanted} would not match its vectors "
                        f"(neighbours move): drop --dtype, or pass --dtype {recorded}")
