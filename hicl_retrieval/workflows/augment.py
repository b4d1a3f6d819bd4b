"""Add retrieved posts to task examples: the demonstrations of HICL fine-tuning.

Each input line is a JSON object with ``labels`` and ``text``. The output line keeps every key
(``labels`` as a string, as the reference HICL scripts look labels up by string) and adds the
top posts as ``text0`` ... ``text{K-1}``, best first, which is the format the reference HICL
scripts read. Their ids and scores go to a second file alongside (``OUT.hits.jsonl``, one
line per example), so the main file holds nothing the reference readers do not expect.

The query itself and its copies are never returned (searches de-duplicate on the example's
own text), and a filter such as ``exclude_sources`` keeps posts of other splits out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..core.atomic import replacing
from ..core.bounds import COUNT, check
from ..core.config import DeviceConfig
from ..core.errors import HiclError
from ..core.files import check_output, text_lines
from ..index.filters import Filter
from .search import Retriever

HITS_SUFFIX = ".hits.jsonl"


@dataclass(frozen=True)
class AugmentReport:
    examples: int
    short: int
    """Examples for which fewer than `top` posts were found (their missing texts are empty)."""
    out: Path
    hits: Path


def read_examples(path: str | Path) -> list[dict]:
    """Task examples from JSON lines, each an object with ``labels`` and a non-empty string ``text``.

    Every line is checked before any search, and the first bad one is reported with its line
    number: a dataset silently missing examples would change the task.
    """
    examples = []
    for number, line in text_lines(path, "input file"):
        if not line.strip():
            continue
        try:
            example = json.loads(line)
        except (ValueError, RecursionError) as exc:
            raise HiclError(f"{path} line {number}: not JSON ({exc})") from None
        if not isinstance(example, dict) or not isinstance(example.get("text"), str) or not example["text"].strip():
            raise HiclError(f"{path} line {number}: expected an object with a non-empty string 'text'")
        if "labels" not in example:
            raise HiclError(f"{path} line {number}: missing 'labels'")
        examples.append(example)
    if not examples:
        raise HiclError(f"{path} holds no examples")
    return examples


def augment_file(
    index: str | Path,
    input_path: str | Path,
    out: str | Path,
    *,
    top: int = 1,
    strip_query_hashtags: bool = False,
    filter: Filter | None = None,
    threads: int | None = None,
    running: DeviceConfig | None = None,
    batch_size: int = 512,
) -> AugmentReport:
    """Write `input_path`'s examples with their `top` retrieved posts to `out` (and ids, scores alongside)."""
    check("--top", top, COUNT)
    out = check_output(out, inputs=[input_path])
    hits_path = check_output(out.with_name(out.name.removesuffix(".jsonl") + HITS_SUFFIX), inputs=[input_path],
                             what="hits output")
    examples = read_examples(input_path)
    short = 0
    # The hits file is replaced first: a complete output file always has its hits beside it.
    with Retriever(index, threads=threads, running=running) as retriever, replacing(out) as tmp_out, replacing(hits_path) as tmp_hits, \
            open(tmp_out, "w", encoding="utf-8") as texts_file, open(tmp_hits, "w", encoding="utf-8") as hits_file:
        for start in range(0, len(examples), batch_size):
            chunk = examples[start : start + batch_size]
            results = retriever.search([e["text"] for e in chunk], k=top, strip_query_hashtags=strip_query_hashtags,
                                       filter=filter)
            for example, result in zip(chunk, results):
                short += len(result.hits) < top
                line = {**example, "labels": example["labels"] if isinstance(example["labels"], str)
                        else json.dumps(example["labels"])}
                line.update({f"text{i}": hit.text for i, hit in enumerate(result.hits)})
                line.update({f"text{i}": "" for i in range(len(result.hits), top)})
                texts_file.write(json.dumps(line, ensure_ascii=False) + "\n")
                hits_file.write(json.dumps({"ids": [hit.post_id if hit.post_id is not None else hit.id
                                                    for hit in result.hits],
                                            "scores": [round(hit.score, 6) for hit in result.hits]}) + "\n")
    return AugmentReport(examples=len(examples), short=short, out=out, hits=hits_path)
