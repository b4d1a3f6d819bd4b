"""The official metric of each TweetEval task, as the TweetEval and HICL papers report them."""

from __future__ import annotations

from collections.abc import Sequence

from ..core.errors import HiclError

# task -> (metric, classes it averages over; None: every class)
TASK_METRICS: dict[str, tuple[str, tuple[int, ...] | None]] = {
    "emotion": ("f1", None),
    "hate": ("f1", None),
    "offensive": ("f1", None),
    "emoji": ("f1", None),
    "sentiment": ("recall", None),
    "irony": ("f1", (1,)),  # F1 of the ironic class
    "stance": ("f1", (1, 2)),  # mean F1 of against and favor; none is left out
}


def _f1(gold: Sequence[int], predicted: Sequence[int], label: int) -> float:
    true_positive = sum(g == label and p == label for g, p in zip(gold, predicted))
    guessed, actual = sum(p == label for p in predicted), sum(g == label for g in gold)
    return 0.0 if true_positive == 0 else 2 * true_positive / (guessed + actual)


def _recall(gold: Sequence[int], predicted: Sequence[int], label: int) -> float:
    actual = sum(g == label for g in gold)
    return sum(g == label and p == label for g, p in zip(gold, predicted)) / actual if actual else 0.0


def task_score(task: str, gold: Sequence[int], predicted: Sequence[int]) -> float:
    """The task's official score: macro-F1 (emotion, hate, offensive, emoji), macro recall
    (sentiment), F1 of the ironic class (irony), mean F1 of against and favor (stance).

    Macro averages run over the classes in the gold or predicted labels, as scikit-learn's.
    """
    if task not in TASK_METRICS:
        raise HiclError(f"unknown task {task!r}; known: {', '.join(sorted(TASK_METRICS))}")
    if len(gold) != len(predicted) or not gold:
        raise ValueError(f"{len(gold)} gold labels and {len(predicted)} predictions")
    metric, classes = TASK_METRICS[task]
    labels = classes if classes is not None else sorted(set(gold) | set(predicted))
    measure = _f1 if metric == "f1" else _recall
    return sum(measure(gold, predicted, label) for label in labels) / len(labels)
