"""Offline tests for scripts/fetch_tweeteval.py.

The script is pointed at a file:// copy of a few TweetEval files taken from
the local data directory (environment variable HICL_DATA_DIR, default
../shared/data relative to the repository root).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "scripts" / "fetch_tweeteval.py"
DATA_DIR = Path(os.environ.get("HICL_DATA_DIR", REPO_ROOT / ".." / "shared" / "data")).resolve()
TWEETEVAL_DIR = DATA_DIR / "tweeteval"

# Small files from three different folders, one of them a stance subfolder.
SAMPLE = [
    "datasets/irony/mapping.txt",
    "datasets/stance/mapping.txt",
    "datasets/stance/climate/val_labels.txt",
]


def _load_script():
    spec = importlib.util.spec_from_file_location("fetch_tweeteval", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


ft = _load_script()

needs_data = pytest.mark.skipif(
    not (TWEETEVAL_DIR / "datasets").is_dir(),
    reason=f"TweetEval copy not found at {TWEETEVAL_DIR}; set HICL_DATA_DIR to the data directory",
)


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A file:// mirror holding SAMPLE, with MANIFEST reduced to those files."""
    src_root = tmp_path / "mirror"
    for rel in SAMPLE:
        dest = src_root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(TWEETEVAL_DIR / rel, dest)
    monkeypatch.setattr(ft, "MANIFEST", {rel: ft.MANIFEST[rel] for rel in SAMPLE})
    return src_root


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@needs_data
def test_fetch_lands_files_in_layout_then_skips(mirror, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--out", str(out), "--base-url", mirror.as_uri(), "--tasks", "irony", "stance/climate"]

    assert ft.main(argv) == 0
    assert _files(out) == sorted(SAMPLE)
    for rel in SAMPLE:
        assert (out / rel).read_bytes() == (TWEETEVAL_DIR / rel).read_bytes()
    first = capsys.readouterr().out.strip().splitlines()
    assert len(first) == 1 and "3 downloaded" in first[0]

    mtimes = {rel: (out / rel).stat().st_mtime_ns for rel in SAMPLE}
    assert ft.main(argv) == 0
    second = capsys.readouterr().out.strip().splitlines()
    assert len(second) == 1 and "0 downloaded" in second[0] and "3 already present" in second[0]
    assert {rel: (out / rel).stat().st_mtime_ns for rel in SAMPLE} == mtimes


@needs_data
def test_fetch_returns_summary_and_honours_task_selection(mirror, tmp_path):
    out = tmp_path / "out"
    summary = ft.fetch(out, mirror.as_uri(), ["irony"])
    assert summary.downloaded == ["datasets/irony/mapping.txt"]
    assert summary.skipped == []
    assert _files(out) == ["datasets/irony/mapping.txt"]


@needs_data
def test_corrupted_source_fails_and_leaves_nothing(mirror, tmp_path, capsys):
    bad = "datasets/stance/climate/val_labels.txt"
    with open(mirror / bad, "ab") as fh:
        fh.write(b"2\n")
    out = tmp_path / "out"

    rc = ft.main(["--out", str(out), "--base-url", mirror.as_uri(), "--tasks", "stance/climate"])

    assert rc != 0
    err = capsys.readouterr().err
    assert bad in err and "checksum mismatch" in err
    assert not (out / bad).exists()
    assert not [p for p in out.rglob("*") if p.is_file() and p.name != "mapping.txt"]


@needs_data
def test_existing_file_with_wrong_checksum_is_replaced(mirror, tmp_path):
    out = tmp_path / "out"
    stale = out / "datasets" / "irony" / "mapping.txt"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"stale\n")

    summary = ft.fetch(out, mirror.as_uri(), ["irony"])

    assert summary.downloaded == ["datasets/irony/mapping.txt"]
    assert stale.read_bytes() == (TWEETEVAL_DIR / "datasets/irony/mapping.txt").read_bytes()


@needs_data
def test_manifest_matches_local_copy():
    local = {
        p.relative_to(TWEETEVAL_DIR).as_posix(): p
        for p in (TWEETEVAL_DIR / "datasets").rglob("*")
        if p.is_file()
    }
    assert set(ft.MANIFEST) == set(local)
    assert "datasets/sentiment/train_text.txt" not in ft.MANIFEST
    for rel, path in local.items():
        assert ft.sha256_of(path) == ft.MANIFEST[rel], rel


def test_select_includes_parent_folder_files():
    chosen = ft.select(["stance/climate"])
    assert "datasets/stance/mapping.txt" in chosen
    assert "datasets/README.txt" in chosen
    assert all(
        p.startswith("datasets/stance/climate/") or p in ("datasets/stance/mapping.txt", "datasets/README.txt")
        for p in chosen
    )
    assert ft.select(None) == sorted(ft.MANIFEST)


def test_unknown_task_is_a_usage_error(tmp_path):
    with pytest.raises(ValueError):
        ft.select(["no-such-task"])
    with pytest.raises(SystemExit) as exc:
        ft.main(["--out", str(tmp_path), "--tasks", "no-such-task"])
    assert exc.value.code == 2
    assert not any(tmp_path.iterdir())
