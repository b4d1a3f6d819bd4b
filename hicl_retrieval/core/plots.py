"""Curves drawn to a PNG with matplotlib's Agg backend (the ``plot`` extra), the numbers drawn written beside as JSON.

A picture alone cannot be checked or redrawn; the JSON file next to it (same name, ``.json``)
holds every value of every line, so a reader can compare runs without reading pixels.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .atomic import replacing, write_json
from .errors import HiclError


def check_plot_path(path: str | Path) -> Path:
    """Refuse, before any work, a --plot that is not a .png or that matplotlib is missing for."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise HiclError(f"--plot writes a PNG: name a .png file, not {path.name!r}")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise HiclError("--plot needs matplotlib: pip install 'hicl-retrieval[plot]'") from None
    return path


def write_curves(path: str | Path, *, title: str, x: Sequence[int], series: dict[str, Sequence[float]],
                 xlabel: str, ylabel: str, details: dict[str, Any] | None = None) -> Path:
    """One line per entry of `series` over `x`, saved as the PNG `path`; the JSON beside it, whose path is returned."""
    path = check_plot_path(path)
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

    figure = Figure(figsize=(7.5, 4.8), dpi=100, layout="constrained")
    axes = figure.subplots()
    for name, values in series.items():
        axes.plot(list(x), list(values), marker="o", markersize=3, label=name)
    axes.set_title("\n".join(textwrap.wrap(title, 90)), fontsize=10)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_xticks(list(x))
    axes.set_ylim(0, min(1.0, max(max(values) for values in series.values()) * 1.1 + 0.02))
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    with replacing(path) as tmp:
        figure.savefig(tmp, format="png")
    numbers = path.with_suffix(".json")
    write_json(numbers, {"title": title, "xlabel": xlabel, "ylabel": ylabel, "x": list(x),
                         "series": {name: [float(v) for v in values] for name, values in series.items()},
                         **(details or {})})
    return numbers

