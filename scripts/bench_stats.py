#!/usr/bin/env python3
"""GET /stats of the search service: the first answer of an index version (its DuckDB queries) and cached ones.

In one run, on a real uvicorn server on loopback over `--index` (e.g. all TweetEval tweets):
the figures computed in this process `--repeats` times (each as a first answer would), then the
first HTTP answer and `--repeats` cached ones. Targets on the 154k-post TweetEval index: under
200 ms the first time, under 5 ms cached.

    python scripts/bench_stats.py --index indexes/tweeteval-minilm
"""

from __future__ import annotations

import argparse
import socket
import statistics
import threading
import time
import urllib.request
from pathlib import Path

from timing import timed

from hicl_retrieval.index.stats import index_stats
from hicl_retrieval.service.app import create_app
from hicl_retrieval.workflows.search import Retriever


def get(port: int, path: str) -> float:
    start = time.perf_counter()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=60) as answer:
        answer.read()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    import uvicorn

    retriever = Retriever(args.index)
    times, figures = timed(lambda: index_stats(retriever.directory, retriever.manifest, retriever.store), args.repeats)
    print(f"{figures['posts']} posts, {len(figures['over_time'])} {figures['unit']}s, {len(figures['segments'])} segments")
    print(f"in process, each as a first answer: min {1e3 * min(times):.1f} ms, median {1e3 * statistics.median(times):.1f} ms")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(args.index, retriever=retriever), host="127.0.0.1", port=port,
                                           log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    get(port, "/health")
    first = get(port, "/stats")
    cached = [get(port, "/stats") for _ in range(args.repeats)]
    health = [get(port, "/health") for _ in range(args.repeats)]
    print(f"HTTP first /stats {1e3 * first:.1f} ms (target 200); cached min {1e3 * min(cached):.2f} ms, median "
          f"{1e3 * statistics.median(cached):.2f} ms (target 5); /health beside, the floor of a request here: "
          f"median {1e3 * statistics.median(health):.2f} ms")
    server.should_exit = True


if __name__ == "__main__":
    main()
