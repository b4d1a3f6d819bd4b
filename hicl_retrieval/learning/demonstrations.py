"""Classifier inputs with a retrieved demonstration and trigger tokens: ``[T..] x [T..] x' [T..]``.

As in the reference HICL code, the example `x` and its retrieved post `x'` are tokenised
separately, each with its own special tokens and its own length limit, and joined with new
trigger tokens placed by a template of three digits: "050" puts no trigger before `x`, five
between `x` and `x'` and none after. Batches pad to their own longest input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..core.errors import HiclError

TRIGGER = "[HICL_T{}]"


def parse_template(template: str) -> tuple[int, int, int]:
    """Triggers before `x`, between `x` and `x'`, and after `x'`: "050" -> (0, 5, 0)."""
    if len(template) != 3 or not template.isdigit():
        raise HiclError(f"a trigger template is three digits (before x, between, after x'), e.g. 050; not {template!r}")
    before, between, after = (int(c) for c in template)
    return before, between, after


def add_triggers(tokenizer, model, count: int) -> list[int]:
    """Add `count` trigger tokens to the tokenizer and rows for them to the model's embeddings."""
    tokens = [TRIGGER.format(i) for i in range(count)]
    if count:
        tokenizer.add_tokens(tokens, special_tokens=True)
        model.resize_token_embeddings(len(tokenizer))
    return tokenizer.convert_tokens_to_ids(tokens)


@dataclass(frozen=True)
class Encoded:
    """One example's token ids, `x` and (when used) its demonstration `x'`, and its label."""

    query: list[int]
    demonstration: list[int] | None
    label: int


class DemonstrationCollator:
    """Tokenises examples and joins them with trigger tokens into padded batches of tensors."""

    def __init__(self, tokenizer, *, template: str = "050", trigger_ids: Sequence[int] = (), max_query: int = 128,
                 max_demonstration: int = 128, context: bool = True) -> None:
        self.tokenizer = tokenizer
        self.context = context
        counts = parse_template(template) if context else (0, 0, 0)
        if sum(counts) > len(trigger_ids):
            raise HiclError(f"template {template} needs {sum(counts)} trigger tokens, {len(trigger_ids)} were added")
        ids = list(trigger_ids)
        self.before = ids[: counts[0]]
        self.between = ids[counts[0] : counts[0] + counts[1]]
        self.after = ids[counts[0] + counts[1] : sum(counts)]
        self.max_query = max_query
        self.max_demonstration = max_demonstration

    def encode(self, texts: Sequence[str], demonstrations: Sequence[str] | None, labels: Sequence[int]) -> list[Encoded]:
        """Token ids of each example (done once per dataset, not per batch)."""
        if self.context and demonstrations is None:
            raise HiclError("examples need a retrieved post (text0) unless context is off")
        queries = self.tokenizer(list(texts), truncation=True, max_length=self.max_query)["input_ids"]
        shown = (self.tokenizer(list(demonstrations), truncation=True, max_length=self.max_demonstration)["input_ids"]
                 if self.context else [None] * len(queries))
        return [Encoded(q, d, int(label)) for q, d, label in zip(queries, shown, labels)]

    def ids(self, example: Encoded) -> list[int]:
        if not self.context:
            return list(example.query)
        return self.before + example.query + self.between + example.demonstration + self.after

    def __call__(self, batch: Sequence[Encoded]) -> dict:
        import torch

        rows = [self.ids(example) for example in batch]
        width = max(len(row) for row in rows)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for number, row in enumerate(rows):
            input_ids[number, : len(row)] = torch.tensor(row)
            attention[number, : len(row)] = 1
        labels = torch.tensor([example.label for example in batch], dtype=torch.long)
        return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


def freeze_all_but_triggers(model, trigger_ids: Sequence[int]):
    """Stage two of HICL training: only the trigger tokens' embedding rows can change.

    Every parameter but the input embeddings is frozen, and a hook zeroes the gradient of every
    other row (the original vocabulary). Returns the embedding weight, the one parameter to
    optimise (with no weight decay, which would move the frozen rows too), and the hook's
    handle (``.remove()`` it to train the whole model again).
    """
    import torch

    for parameter in model.parameters():
        parameter.requires_grad_(False)
    weight = model.get_input_embeddings().weight
    weight.requires_grad_(True)
    mask = torch.zeros(weight.shape[0], 1, dtype=weight.dtype, device=weight.device)
    mask[list(trigger_ids)] = 1
    handle = weight.register_hook(lambda gradient: gradient * mask)
    return weight, handle
