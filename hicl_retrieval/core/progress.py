"""Progress bars (tqdm) whose totals are estimates."""

from __future__ import annotations


def advance(bar, records: int) -> None:
    """Move the progress bar past `records` more records, raising its estimated total when passed."""
    bar.update(records)
    if bar.total is not None and bar.n > bar.total:
        bar.total = bar.n
