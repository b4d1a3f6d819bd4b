"""The native runtimes, torch and FAISS (and the tokenizers' Rust pool): load order and thread counts in one place.

Both bring their own OpenMP runtime. Importing FAISS before torch can crash torch's kernels
(faiss issue #4273), so FAISS is only ever imported through `faiss()`, which imports torch
first. Each pool is sized to the cores this process may use; the encoder and the search never
run at the same time, so the pools do not oversubscribe the machine.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

_threads: int | None = None


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def faiss() -> ModuleType:
    """The `faiss` module, imported after torch.

    torch is loaded by a call rather than an import statement: an import sorter reorders the
    statements of an import block (one once put ``import faiss`` first here) but never moves an
    import across a call, whatever directives it knows.
    """
    importlib.import_module("torch")
    import faiss as faiss_module

    return faiss_module


def set_threads(threads: int | None = None) -> int:
    """Use `threads` (default: every available core) in torch and FAISS, and in the Rust tokenizers where this
    process has not tokenised yet (their pool is made at first use, one thread a core); returns the count.

    Build workers run one thread each: two of them on two cores, each tokenising on both, took 1.2x as long."""
    import torch

    from .bounds import THREADS, check

    global _threads
    check("--threads", threads, THREADS)
    count = threads if threads is not None else available_cores()
    os.environ["RAYON_NUM_THREADS"] = str(count)
    if count == 1:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
    if _threads != count:
        torch.set_num_threads(count)
        faiss().omp_set_num_threads(count)
        _threads = count
    return count
