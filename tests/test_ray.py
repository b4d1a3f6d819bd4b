"""Encoding on a Ray cluster (a real local one): the same index as one process, and kill -9 survival."""

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import index_contents, write_big_corpus

from hicl_retrieval import BuildConfig, HiclError, add_posts, build_index
from hicl_retrieval.core.config import DeviceConfig, RayConfig, resolve_encoder
from hicl_retrieval.index.manifest import BUILD_STATE, MANIFEST

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray", reason="install the [ray] extra: pip install 'hicl-retrieval[ray]'")
TOTAL = 8000


def assert_same_index(got: Path, want: Path) -> None:
    got_posts, got_rejects, got_stats = index_contents(got)
    want_posts, want_rejects, want_stats = index_contents(want)
    assert got_stats == want_stats and got_rejects == want_rejects
    assert got_posts.keys() == want_posts.keys()
    for key, vector in want_posts.items():
        np.testing.assert_allclose(got_posts[key], vector, atol=2e-3)


def test_a_ray_build_and_add_equal_the_same_in_one_process(tmp_path, tiny_hashencoder):
    config = dataclasses.replace(resolve_encoder("hashencoder"), model=str(tiny_hashencoder))
    first, more = tmp_path / "first.jsonl", tmp_path / "more.jsonl"
    write_big_corpus(first, 900)
    write_big_corpus(more, 1300)  # the first 900 post ids again, and 400 new ones
    settings = RayConfig(address="local", cpus=2, workers=2, threads=1)
    build = BuildConfig(encoder=config, chunk_size=40, progress=False)
    try:
        report = build_index([first], tmp_path / "ray", dataclasses.replace(build, ray=settings))
        assert report.encoded_on.startswith("Ray: 2 worker(s) on 1 host(s)"), report.encoded_on
        added = add_posts(tmp_path / "ray", [more], ray=settings, chunk_size=64, progress=False)
        with pytest.raises(HiclError, match="--device cuda: the Ray workers get no GPU"):
            build_index([first], tmp_path / "gpu", dataclasses.replace(
                build, ray=settings, encoding=DeviceConfig(device="cuda")))
        with pytest.raises(HiclError, match="3 workers of 1 threads and 0 GPUs need 3 CPUs"):
            build_index([first], tmp_path / "big", dataclasses.replace(
                build, ray=dataclasses.replace(settings, workers=3)))
        assert not (tmp_path / "gpu").exists() and not (tmp_path / "big").exists()  # refused before any work
    finally:
        ray.shutdown()
    build_index([first], tmp_path / "local", build)
    local_added = add_posts(tmp_path / "local", [more], chunk_size=64, progress=False)
    assert (added.added, added.known, added.read) == (local_added.added, local_added.known, local_added.read)
    assert added.added == 400
    assert_same_index(tmp_path / "ray", tmp_path / "local")


def command(corpus: Path, out: Path, model: Path, *, ray_workers: int | None) -> list[str]:
    line = [sys.executable, "-m", "hicl_retrieval.cli", "build", str(corpus), "--out", str(out), "--encoder",
            str(model), "--pooling", "pooler", "--chunk-size", "32", "--threads", "1", "--quiet"]
    return line + (["--ray", "local", "--ray-cpus", "2", "--workers", str(ray_workers)] if ray_workers else [])


def wait_for_vectors(process: subprocess.Popen, out: Path, share: float) -> bool:
    """Wait until the build has written `share` of its vectors; False if it ended first."""
    vectors = out / "seg-0.f16"
    while process.poll() is None:
        if vectors.exists() and vectors.stat().st_size >= share * TOTAL * 2 * 32:  # float16 x 32 dimensions
            return True
        time.sleep(0.005)
    return False


def workers_running() -> list[int]:
    found = subprocess.run(["pgrep", "-f", "ray::EncodeWorker"], capture_output=True, text=True).stdout
    return [int(pid) for pid in found.split()]


@pytest.fixture(scope="module")
def big_corpus(tmp_path_factory, tiny_hashencoder):
    root = tmp_path_factory.mktemp("ray-big")
    write_big_corpus(root / "posts.jsonl", TOTAL)
    subprocess.run(command(root / "posts.jsonl", root / "reference", tiny_hashencoder, ray_workers=None),
                   check=True, capture_output=True)
    return root


def test_kill_9_of_the_driver_then_the_same_command_resumes_without_loss_or_doubles(big_corpus, tiny_hashencoder,
                                                                                   tmp_path):
    out = tmp_path / "index"
    line = command(big_corpus / "posts.jsonl", out, tiny_hashencoder, ray_workers=2)
    kills = 0
    for share in (0.2, 0.6):
        process = subprocess.Popen(line, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if wait_for_vectors(process, out, share):
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
        assert not (out / MANIFEST).exists() and (out / BUILD_STATE).exists()
        deadline = time.time() + 30
        while workers_running() and time.time() < deadline:  # the local cluster dies with its driver
            time.sleep(0.2)
        assert not workers_running()
    assert kills == 2
    finished = subprocess.run(line, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    assert "resumed an interrupted build" in finished.stdout
    assert_same_index(out, big_corpus / "reference")


def test_a_worker_killed_mid_build_is_replaced_and_its_chunks_run_again(big_corpus, tiny_hashencoder, tmp_path):
    out = tmp_path / "index"
    process = subprocess.Popen(command(big_corpus / "posts.jsonl", out, tiny_hashencoder, ray_workers=2),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert wait_for_vectors(process, out, 0.3)
    victims = workers_running()
    assert len(victims) == 2
    os.kill(victims[0], signal.SIGKILL)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    assert "resumed" not in stdout
    assert_same_index(out, big_corpus / "reference")
