"""Curves and bars drawn to a PNG with matplotlib's Agg backend (the ``plot`` extra), the numbers drawn written
beside as JSON.

A picture alone cannot be checked or redrawn; the JSON file next to it (same name, ``.json``)
holds every value of every line, so a reader can compare runs without reading pixels.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
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


def _figure(**size: Any):
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

    return Figure(dpi=100, layout="constrained", **size)


def _save(figure, path: Path, numbers: dict[str, Any]) -> Path:
    with replacing(path) as tmp:
        figure.savefig(tmp, format="png")
    beside = path.with_suffix(".json")
    write_json(beside, numbers)
    return beside


def write_curves(path: str | Path, *, title: str, x: Sequence[int], series: dict[str, Sequence[float]],
                 xlabel: str, ylabel: str, details: dict[str, Any] | None = None) -> Path:
    """One line per entry of `series` over `x`, saved as the PNG `path`; the JSON beside it, whose path is returned."""
    path = check_plot_path(path)
    figure = _figure(figsize=(7.5, 4.8))
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
    return _save(figure, path, {"title": title, "xlabel": xlabel, "ylabel": ylabel, "x": list(x),
                                "series": {name: [float(v) for v in values] for name, values in series.items()},
                                **(details or {})})


@dataclass(frozen=True)
class Bars:
    """One panel of bars: a bar per label, made of `parts` stacked (name -> a value per label)."""

    title: str
    labels: list[str]
    parts: dict[str, list[float]]
    horizontal: bool = False
    """Ranked rows, the first on top; otherwise columns in order (a time line)."""
    empty: str = "nothing to draw"
    """Written in the panel when it has no label."""


MAX_TICKS = 10
"""A column panel labels at most this many columns, evenly spread."""


def write_bars(path: str | Path, *, title: str, panels: Sequence[Bars], numbers: dict[str, Any]) -> Path:
    """`panels` in a grid of two columns saved as the PNG `path`; `numbers` (what was drawn) in the JSON beside it,
    whose path is returned."""
    path = check_plot_path(path)
    from matplotlib.ticker import MaxNLocator

    rows = (len(panels) + 1) // 2
    figure = _figure(figsize=(11, 3.6 * rows))
    figure.suptitle("\n".join(textwrap.wrap(title, 120)), fontsize=10)
    grid = figure.subplots(rows, 2, squeeze=False)
    for axes, panel in zip(grid.flat, panels):
        axes.set_title(panel.title, fontsize=9)
        if not panel.labels:
            axes.text(0.5, 0.5, panel.empty, ha="center", va="center", color="#666", transform=axes.transAxes)
            axes.set_axis_off()
            continue
        place = range(len(panel.labels))
        start = [0.0] * len(panel.labels)
        for name, values in panel.parts.items():
            draw = axes.barh if panel.horizontal else axes.bar
            draw(place, values, 0.8, start, label=name)
            start = [a + b for a, b in zip(start, values)]
        if panel.horizontal:
            axes.set_yticks(list(place), panel.labels, fontsize=8)
            axes.invert_yaxis()
        else:
            shown = list(place)[::max(1, -(-len(panel.labels) // MAX_TICKS))]
            axes.set_xticks(shown, [panel.labels[i] for i in shown], fontsize=8, rotation=30, ha="right")
        (axes.xaxis if panel.horizontal else axes.yaxis).set_major_locator(MaxNLocator(integer=True))
        if len(panel.parts) > 1:
            axes.legend(fontsize=8)
    for axes in list(grid.flat)[len(panels):]:
        axes.set_axis_off()
    return _save(figure, path, {"title": title, **numbers})

