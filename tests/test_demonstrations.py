"""Trigger tokens placed by the template, batches padded, and stage two moving trigger rows only."""

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hicl_retrieval import HiclError
from hicl_retrieval.learning.demonstrations import (
    DemonstrationCollator,
    add_triggers,
    freeze_all_but_triggers,
    parse_template,
)


@pytest.fixture
def classifier(tiny_hashencoder):
    tokenizer = AutoTokenizer.from_pretrained(tiny_hashencoder)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_hashencoder, num_labels=3)
    return tokenizer, model


def test_templates():
    assert parse_template("050") == (0, 5, 0) and parse_template("213") == (2, 1, 3)
    for bad in ("05", "0a0", "0500"):
        with pytest.raises(HiclError, match="three digits"):
            parse_template(bad)


def test_triggers_are_placed_per_template(classifier):
    tokenizer, model = classifier
    triggers = add_triggers(tokenizer, model, 6)
    assert len(set(triggers)) == 6 and min(triggers) >= len(tokenizer) - 6
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer)
    collator = DemonstrationCollator(tokenizer, template="213", trigger_ids=triggers, max_query=8, max_demonstration=6)
    examples = collator.encode(["the flood river", "rain"], ["fire game music vote the the the the", "vote"], [2, 0])
    x0 = tokenizer("the flood river", truncation=True, max_length=8)["input_ids"]
    d0 = tokenizer("fire game music vote the the the the", truncation=True, max_length=6)["input_ids"]
    assert len(d0) == 6  # cut to its own limit, special tokens kept
    batch = collator(examples)
    expected = triggers[:2] + x0 + triggers[2:3] + d0 + triggers[3:6]
    assert batch["input_ids"][0].tolist()[: len(expected)] == expected
    assert batch["input_ids"].shape[1] == max(len(expected), len(collator.ids(examples[1])))  # padded per batch
    short = collator.ids(examples[1])
    assert batch["attention_mask"][1].tolist() == [1] * len(short) + [0] * (batch["input_ids"].shape[1] - len(short))
    assert batch["input_ids"][1, len(short):].eq(tokenizer.pad_token_id).all()
    assert batch["labels"].tolist() == [2, 0]

    plain = DemonstrationCollator(tokenizer, context=False, max_query=8)
    assert plain(plain.encode(["the flood river"], None, [1]))["input_ids"][0].tolist() == x0
    with pytest.raises(HiclError, match="needs 5 trigger tokens"):
        DemonstrationCollator(tokenizer, template="050", trigger_ids=triggers[:4])


def test_stage_two_changes_only_trigger_rows(classifier):
    tokenizer, model = classifier
    triggers = add_triggers(tokenizer, model, 5)
    collator = DemonstrationCollator(tokenizer, template="050", trigger_ids=triggers)
    batch = collator(collator.encode(["the flood river", "music game"], ["rain fire", "vote"], [1, 2]))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    weight, hook = freeze_all_but_triggers(model, triggers)
    optimizer = torch.optim.AdamW([weight], lr=0.05, weight_decay=0.0)
    model.train()
    for _ in range(3):
        optimizer.zero_grad()
        model(**batch).loss.backward()
        optimizer.step()
    hook.remove()
    name = next(n for n, p in model.named_parameters() if p is weight)
    changed = (weight.detach() - before[name]).abs().sum(dim=1) > 0
    assert changed[triggers].all()
    assert not changed[: min(triggers)].any()  # the original vocabulary did not move
    for other, parameter in model.named_parameters():
        if other != name:
            assert torch.equal(parameter, before[other]), other
