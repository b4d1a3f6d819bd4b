"""torch is loaded before FAISS in every process the package runs (case 15; faiss issue #4273).

Importing FAISS before torch can crash torch's kernels, so `core/native.py` imports FAISS only
after torch. Each check runs in a fresh Python process whose first act is to install a finder
that notes when torch and faiss start to run; a process in which faiss never runs passes. Once
faiss has run the order is settled, so the process ends there: the check of a command that
loads a model takes the time of two imports, not of its work.
"""

import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers import free_port, write_corpus, write_lines

from hicl_retrieval import BuildConfig, build_index

WATCHED = r'''
import importlib.machinery
import json
import os
import sys

LOG = sys.argv[1]
assert "torch" not in sys.modules and "faiss" not in sys.modules, "loaded before the watch began"


class FirstRuns:
    """Writes "torch" or "faiss" to LOG as the module starts to run, and ends the process once faiss
    has run. A look-up alone (transformers asks importlib.util.find_spec("faiss") whether it is
    installed) runs nothing and writes nothing."""

    def find_spec(self, name, path=None, target=None):
        if name not in ("torch", "faiss"):
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None:
            run = spec.loader.exec_module

            def exec_module(module):
                with open(LOG, "a") as log:
                    log.write(name + "\n")
                run(module)
                if name == "faiss":
                    os._exit(0)

            spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, FirstRuns())
what = json.loads(sys.argv[2])
if what == "every module":
    import importlib
    import pkgutil

    import hicl_retrieval

    for found in pkgutil.walk_packages(hicl_retrieval.__path__, "hicl_retrieval."):
        if not found.name.endswith(".__main__"):  # that one runs the command
            importlib.import_module(found.name)
else:
    from hicl_retrieval.cli import main

    sys.exit(main(what))
'''

COMMANDS = ["build", "add", "delete", "compact", "reindex", "verify", "export", "info", "query", "augment",
            "eval-retrieval", "train-encoder", "finetune", "serve"]


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_encoder, tiny_hashencoder):
    root = tmp_path_factory.mktemp("order")
    write_corpus(root / "posts.jsonl")
    build_index([root / "posts.jsonl"], root / "index", BuildConfig(encoder=tiny_encoder.config, progress=False),
                encoder=tiny_encoder)
    write_lines(root / "examples.jsonl", [{"labels": i % 2, "text": f"football final {i}"} for i in range(4)])
    return root, tiny_hashencoder


def scenarios(root: Path, model: Path, tmp: Path) -> dict[str, list[str] | str]:
    """argv of `main` for each command, with arguments that take it to its end (serve: to serving)."""
    index, corpus, examples = str(root / "index"), str(root / "posts.jsonl"), str(root / "examples.jsonl")
    copies = {}
    for name in ("add", "delete", "compact", "reindex"):  # commands that change the index get a copy each
        copies[name] = str(shutil.copytree(root / "index", tmp / f"index-{name}"))
    runs: dict[str, list[str] | str] = {
        "every module": "every module",
        "build": ["build", corpus, "--out", str(tmp / "built"), "--encoder", str(model), "--quiet"],
        "add": ["add", copies["add"], str(tmp / "more.jsonl"), "--quiet"],
        "delete": ["delete", copies["delete"], "--post-id", "1003"],
        "compact": ["compact", copies["compact"]],
        "reindex": ["reindex", copies["reindex"], "--index", "flat"],
        "verify": ["verify", index],
        "export": ["export", index, "--out", str(tmp / "posts.jsonl")],
        "info": ["info", index],
        "query": ["query", index, "flood", "-k", "3"],
        "augment": ["augment", index, "--input", examples, "--out", str(tmp / "augmented.jsonl")],
        "eval-retrieval": ["eval-retrieval", index, "--sample", "5", "--max-share", "0.5"],
        "train-encoder": ["train-encoder", corpus, "--out", str(tmp / "encoder"), "--base", str(model), "--steps", "1",
                          "--batch-size", "2", "--held-out", "2", "--eval-every", "1", "--eval-corpus", "10",
                          "--untagged-negatives", "0", "--max-share", "0.5", "--quiet"],
        "finetune": ["finetune", "--task", "irony", "--train", examples, "--dev", examples, "--test", examples,
                     "--backbone", str(model), "--no-context", "--epochs", "1", "--trigger-epochs", "0",
                     "--seeds", "0", "--quiet"],
        "serve": ["serve", index, "--port", str(free_port())],
        "--help": ["--help"],
    }
    write_lines(tmp / "more.jsonl", [{"id": "9000", "text": "a new post about the river flooding"}])
    runs |= {f"{command} --help": [command, "--help"] for command in COMMANDS}
    return runs


def run_watched(name: str, what: list[str] | str, tmp: Path) -> tuple[list[str], int | None, str]:
    """(the order torch and faiss started to run in, exit status or None if it ran on, stderr) of one fresh process."""
    log = tmp / f"{name.replace(' ', '_')}.order"
    try:
        done = subprocess.run([sys.executable, "-c", WATCHED, str(log), json.dumps(what)], capture_output=True,
                              text=True, timeout=120)
        code, err = done.returncode, done.stderr
    except subprocess.TimeoutExpired as stopped:  # serve without FAISS would serve on
        code, err = None, str(stopped.stderr)
    return (log.read_text().split() if log.exists() else []), code, err


# the commands that load FAISS when run this far (so that the check means something for them)
LOADS_FAISS = {"build", "add", "compact", "reindex", "verify", "query", "augment", "eval-retrieval",
               "train-encoder", "finetune", "serve"}


def test_15_torch_is_loaded_before_faiss_in_every_process(files, tmp_path):
    root, model = files
    runs = scenarios(root, model, tmp_path)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(runs, pool.map(lambda item: run_watched(*item, tmp_path), runs.items())))
    faiss_first = {name: order for name, (order, _, _) in results.items()
                   if "faiss" in order and ("torch" not in order or order.index("faiss") < order.index("torch"))}
    assert not faiss_first, f"FAISS loaded before torch in: {faiss_first}"
    failed = {name: (code, err[-2000:]) for name, (_, code, err) in results.items() if code != 0}
    assert not failed, failed
    assert {name for name, (order, _, _) in results.items() if "faiss" in order} >= LOADS_FAISS
