"""Timing and reporting helpers the benchmarks share: runs in turn, percentiles, rates and speed-ups."""

from __future__ import annotations

import statistics
import time

import numpy as np


def timed(function, repeats: int) -> tuple[list[float], object]:
    """Seconds of each of `repeats` runs of `function`, and its last result."""
    return timed_in_turn({"only": function}, repeats)["only"]


def timed_in_turn(functions: dict, repeats: int) -> dict[str, tuple[list[float], object]]:
    """Each function's times and last result, the functions run in turn `repeats` times, so that
    a change of the machine's load meets all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    results: dict[str, object] = {}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            results[name] = function()
            times[name].append(time.perf_counter() - start)
    return {name: (times[name], results[name]) for name in functions}


def percentile(values: list[float], q: float) -> float:
    """The `q`th percentile of `values` (NaN for none)."""
    return float(np.percentile(np.asarray(values), q)) if len(values) else float("nan")


def rate(count: int, times: list[float]) -> str:
    return f"best {count / min(times):8.1f}/s, median {count / statistics.median(times):8.1f}/s"


def speedup(slower: list[float], faster: list[float]) -> str:
    return (f"best {min(slower) / min(faster):.2f}x, "
            f"median {statistics.median(slower) / statistics.median(faster):.2f}x")
