#!/usr/bin/env python3
"""`hicl-retrieval serve` under load: concurrent clients on loopback, with and without micro-batching,
while an `add` changes the index; next to running `hicl-retrieval query` once a post.

For each code (this one in each of `--runtimes`, and with `--baseline` the code of a git worktree, as
today's) and each mode (batched: --max-batch 64; unbatched: --max-batch 1; waiting: --max-batch 64
--max-wait-ms 2, a batch's first search waiting for others), all in turn `--repeats` times,
each time on a fresh copy of the index:

1. the service is started as a real subprocess (the CLI of that code, as a user runs it);
2. unloaded: single-post searches one after another, p50/p99 latency;
3. every probe query is searched once (the answers "before");
4. `--clients` threads, each on its own keep-alive connection, send single-post searches of
   random probe queries for `--steady-seconds` (every answer must be the one of step 3);
5. the same for `--seconds` (at most `--max-requests` each); `--add-at` seconds in,
   `hicl-retrieval add` of that code adds `--add-posts` new tweets to the served index from another process
   (the load goes on at least `--after` seconds past the add's end);
6. when the add and the load are over, every probe query is searched again ("after").

Each answer of the load must be whole: equal to that query's answer before or after the add
(the same post ids in the same order, scores within 1e-4). It prints requests/s, p50 and p99
latency, errors, and how many answers were before, after, or neither, by when they were asked.
Then, in this process, where a single search spends its time (tokenising, the model, FAISS and
the post store) in each of `--runtimes`, and the wall time of `hicl-retrieval query` for one post.

Queries and added posts are CrisisLexT26 tweets (real tweet ids), the index anything built
with `build`, e.g. all TweetEval tweets with MiniLM:

    python scripts/bench_serve.py --index indexes/tweeteval-minilm --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import http.client
import json
import os
import pstats
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from timing import percentile

CLI = str(Path(sys.executable).with_name("hicl-retrieval"))
HERE = Path(__file__).resolve().parent
K = 10


def crisis_tweets(data_dir: Path) -> list[tuple[str, str]]:
    """(tweet id, text) of every CrisisLexT26 tweet, one per text, in a fixed order."""
    seen: dict[str, str] = {}
    for path in sorted((data_dir / "crisislex-t26" / "data" / "CrisisLexT26").glob("*/*-tweets_labeled.csv")):
        with path.open(encoding="utf-8", newline="") as rows:
            for row in csv.DictReader(rows, skipinitialspace=True):
                text = (row.get("Tweet Text") or "").strip()
                if text and text not in seen:
                    seen[text] = row["Tweet ID"].strip()
    return [(tweet_id, text) for text, tweet_id in seen.items()]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def command(code: Path | None, *arguments: str) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of `hicl-retrieval ARGUMENTS` of the code at `code` (None: this code);
    run it from a folder outside the code: `-m` looks in the working directory before PYTHONPATH."""
    return ([sys.executable, "-m", "hicl_retrieval.cli", *arguments],
            {**os.environ, "PYTHONPATH": str(code or HERE.parent)})


class Service:
    """`hicl-retrieval serve INDEX` of the code at `code` (None: this code) in a subprocess, stopped on exit."""

    def __init__(self, index: Path, extra: list[str], log: Path, code: Path | None = None) -> None:
        self.port = free_port()
        self.log = log.open("w")
        started = time.perf_counter()
        argv, env = command(code, "serve", str(index), "--port", str(self.port), *extra)
        self.process = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, cwd=log.parent, env=env)
        while True:
            try:
                Client(self.port).get("/health")
                break
            except OSError:
                if self.process.poll() is not None or time.perf_counter() - started > 300:
                    raise SystemExit(f"the service did not start; see {log}") from None
                time.sleep(0.2)
        self.start_seconds = time.perf_counter() - started

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


class Client:
    """One keep-alive HTTP connection to the service."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def get(self, path: str) -> dict:
        self.connection.request("GET", path)
        return json.loads(self.connection.getresponse().read())

    def search(self, query: str) -> tuple[int, dict]:
        body = json.dumps({"queries": query, "k": K})
        self.connection.request("POST", "/search", body, {"Content-Type": "application/json"})
        answer = self.connection.getresponse()
        return answer.status, json.loads(answer.read())


def signature(answer: dict) -> tuple[tuple[str, ...], np.ndarray]:
    hits = answer["results"][0]["hits"]
    return tuple(hit["post_id"] for hit in hits), np.array([hit["score"] for hit in hits])


def same(a, b) -> bool:
    return a[0] == b[0] and np.allclose(a[1], b[1], atol=1e-4, rtol=0)


def answers(port: int, queries: list[str]) -> dict[str, tuple]:
    client = Client(port)
    out = {}
    for query in queries:
        status, answer = client.search(query)
        if status != 200:
            raise SystemExit(f"a probe search answered {status}: {answer}")
        out[query] = signature(answer)
    return out


def unloaded(port: int, queries: list[str], count: int) -> list[float]:
    """Latencies (ms) of `count` single-post searches one after another, after a warm-up."""
    client = Client(port)
    for query in queries[:10]:
        client.search(query)
    latencies = []
    for number in range(count):
        started = time.perf_counter()
        status, _ = client.search(queries[number % len(queries)])
        latencies.append((time.perf_counter() - started) * 1000)
        assert status == 200
    return latencies


@dataclass
class Answer:
    asked: float
    """Seconds from the start of the load."""
    ms: float
    status: int
    query: str
    found: tuple | None = None
    error: str | None = None


@dataclass
class Load:
    answers: list[Answer] = field(default_factory=list)
    seconds: float = 0.0
    add_start: float | None = None
    add_end: float | None = None
    add_output: str = ""


def run_load(port: int, queries: list[str], args: argparse.Namespace, seconds: float, index: Path,
             add_file: Path | None, code: Path | None = None) -> Load:
    """`args.clients` clients for `seconds`; with `add_file`, an add of it (by the code at `code`, as the service)
    runs `args.add_at` seconds in."""
    load, lock = Load(), threading.Lock()
    started = time.perf_counter()
    # The load lasts `seconds`, and at least --after seconds past the end of the add (at most 3x as long):
    # until the add ends, the clients go on to the longest.
    stop_at = [started + (3 * seconds if add_file is not None else seconds)]

    def client(seed: int) -> None:
        chooser, connection = random.Random(seed), Client(port)
        mine = []
        for _ in range(args.max_requests):
            if time.perf_counter() >= stop_at[0]:
                break
            query = chooser.choice(queries)
            asked = time.perf_counter()
            try:
                status, answer = connection.search(query)
            except (OSError, http.client.HTTPException, ValueError) as exc:
                mine.append(Answer(asked - started, (time.perf_counter() - asked) * 1000, 0, query,
                                   error=f"{exc.__class__.__name__}: {exc}"))
                connection = Client(port)
                continue
            ms = (time.perf_counter() - asked) * 1000
            mine.append(Answer(asked - started, ms, status, query, signature(answer) if status == 200 else None,
                               None if status == 200 else str(answer.get("error"))))
        with lock:
            load.answers.extend(mine)

    def add() -> None:
        time.sleep(args.add_at)
        load.add_start = time.perf_counter() - started
        argv, env = command(code, "add", str(index), str(add_file), "--quiet")
        done = subprocess.run(argv, capture_output=True, text=True, cwd=add_file.parent, env=env)
        load.add_end = time.perf_counter() - started
        stop_at[0] = min(started + max(seconds, load.add_end + args.after), started + 3 * seconds)
        load.add_output = (done.stdout + done.stderr).strip().splitlines()[-1] if (done.stdout + done.stderr) else ""
        if done.returncode:
            raise SystemExit(f"add failed: {done.stderr}")

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(args.clients)]
    adder = threading.Thread(target=add) if add_file is not None else None
    for thread in threads + ([adder] if adder else []):
        thread.start()
    for thread in threads:
        thread.join()
    load.seconds = time.perf_counter() - started
    if adder:
        adder.join()
    return load


def report_load(name: str, load: Load, before: dict, after: dict | None = None) -> float:
    """Print the load's figures and how its answers compare with the answers before and after the add."""
    good = [a for a in load.answers if a.status == 200]
    errors = [a for a in load.answers if a.status != 200]
    latencies = [a.ms for a in good]
    rate = len(good) / load.seconds
    print(f"{name}: {len(load.answers)} requests in {load.seconds:.1f} s = {rate:.1f} requests/s; "
          f"latency p50 {percentile(latencies, 50):.1f} ms, p99 {percentile(latencies, 99):.1f} ms; "
          f"errors {len(errors)}")
    for error in errors[:5]:
        print(f"    error {error.status}: {error.error}")
    if after is None:  # no add: every answer must be the one before
        wrong = [a for a in good if not same(a.found, before[a.query])]
        print(f"    answers other than the unloaded one: {len(wrong)} of {len(good)}")
        return rate
    print(f"    the add ran from {load.add_start:.1f} s to {load.add_end:.1f} s of the load ({load.add_output})")
    phases: dict[str, list[Answer]] = {"answered before the add": [], "asked during it": [], "asked after it": []}
    for a in good:
        phase = ("answered before the add" if a.asked + a.ms / 1000 < load.add_start else
                 "asked after it" if a.asked > load.add_end else "asked during it")
        phases[phase].append(a)
    for phase, members in phases.items():
        unchanged = [a for a in members if same(before[a.query], after[a.query])]
        changed = [a for a in members if not same(before[a.query], after[a.query])]
        old = sum(same(a.found, before[a.query]) for a in changed)
        new = sum(same(a.found, after[a.query]) for a in changed)
        neither = [a for a in members if not same(a.found, before[a.query]) and not same(a.found, after[a.query])]
        kept = sum(same(a.found, before[a.query]) for a in unchanged)
        print(f"    {phase:24s} {len(members):5d} answers; of queries the add changed, {old} as before it, {new} "
              f"as after it; of those it did not, {kept} as both; {len(neither)} neither")
        for a in neither[:3]:
            print(f"        neither: {a.query[:60]!r} -> {a.found[0][:4]}; before {before[a.query][0][:4]}, "
                  f"after {after[a.query][0][:4]}")
    return rate


def profile(index: Path, queries: list[str], count: int, runtime: str) -> None:
    """Where one single-post search spends its time, in this process (no HTTP), the model run by `runtime`."""
    from hicl_retrieval import DeviceConfig, Retriever

    retriever = Retriever(index, running=DeviceConfig(runtime=runtime))
    try:
        for query in queries[:10]:
            retriever.search(query, k=K)
        stages: dict[str, list[float]] = {"tokenise": [], "encode (tokenise + model)": [],
                                          "search (FAISS, post store, copies)": [], "whole search": []}
        for number in range(count):
            query = [queries[number % len(queries)]]
            t0 = time.perf_counter()
            retriever.encoder.tokenize(retriever.encoder.prepare(query))
            t1 = time.perf_counter()
            vectors = retriever.encode_queries(retriever.query_texts(query))
            t2 = time.perf_counter()
            retriever.search_vectors(vectors, K, queries=query)
            t3 = time.perf_counter()
            retriever.search(query, k=K)
            t4 = time.perf_counter()
            for stage, seconds in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                stages[stage].append(seconds * 1000)
        print(f"in-process, one post at a time ({count} posts, {retriever.encoder.device_name}, "
              f"{retriever.encoder.runtime} runtime):")
        for stage, values in stages.items():
            print(f"    {stage:36s} p50 {percentile(values, 50):6.2f} ms, p99 {percentile(values, 99):6.2f} ms")
        profiler = cProfile.Profile()
        vectors = retriever.encode_queries(queries[:1])
        profiler.enable()
        for number in range(count):
            retriever.search_vectors(vectors, K, queries=queries[:1])
        profiler.disable()
        print("    the search without the model, by function (cProfile, tottime):")
        stats = pstats.Stats(profiler)
        top = sorted(stats.stats.items(), key=lambda item: -item[1][2])[:8]
        for (file, line, function), (_, calls, tottime, cumtime, _) in top:
            print(f"        {tottime / count * 1000:6.3f} ms/search  {Path(file).name}:{line} {function}")
    finally:
        retriever.close()


def query_once(index: Path, queries: list[str], runs: int) -> list[float]:
    """Wall seconds of `hicl-retrieval query INDEX POST` (a new process each time)."""
    seconds = []
    for query in queries[:runs]:
        started = time.perf_counter()
        subprocess.run([CLI, "query", str(index), query, "-k", str(K), "--json"], check=True, capture_output=True)
        seconds.append(time.perf_counter() - started)
    return seconds


PHASES = {"steady": "no add", "add": "during an add"}


def measure_mode(name: str, options: list[str], args: argparse.Namespace, probes: list[str], work: Path,
                 add_file: Path, code: Path | None) -> tuple[float, dict[str, float]]:
    """One mode of one code on a fresh copy of the index: (unloaded p50 in ms, requests/s by phase)."""
    copy = work / "index"
    shutil.copytree(args.index, copy)
    service = Service(copy, options, work / "serve.log", code)
    rates = {}
    try:
        single = unloaded(service.port, probes, args.single)
        print(f"{name}: started in {service.start_seconds:.1f} s; unloaded single post: "
              f"p50 {percentile(single, 50):.1f} ms, p99 {percentile(single, 99):.1f} ms ({args.single} searches)")
        before = answers(service.port, probes)
        if args.steady_seconds:
            steady = run_load(service.port, probes, args, args.steady_seconds, copy, None)
            rates["steady"] = report_load(f"{name}, no add", steady, before)
        load = run_load(service.port, probes, args, args.seconds, copy, add_file, code)
        after = answers(service.port, probes)
        changed = sum(not same(before[q], after[q]) for q in probes)
        print(f"{name}: the add changed the answers of {changed} of {len(probes)} probe queries")
        rates["add"] = report_load(f"{name}, during an add", load, before, after)
    finally:
        service.stop()
        shutil.rmtree(copy)
    return percentile(single, 50), rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, required=True, help="a built index (copied; never changed)")
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each load")
    parser.add_argument("--steady-seconds", type=float, default=30.0, help="a load without the add first (0: none)")
    parser.add_argument("--max-requests", type=int, default=100_000, help="requests of one client at most")
    parser.add_argument("--probes", type=int, default=400, help="distinct queries the clients draw from")
    parser.add_argument("--add-posts", type=int, default=1000, help="posts the concurrent add adds")
    parser.add_argument("--add-at", type=float, default=10.0, help="seconds into the load the add starts")
    parser.add_argument("--after", type=float, default=5.0, help="seconds the load goes on after the add at least")
    parser.add_argument("--single", type=int, default=200, help="single-post searches of the unloaded latency")
    parser.add_argument("--query-runs", type=int, default=3, help="`hicl-retrieval query` runs, one post each")
    parser.add_argument("--modes", default="batched,unbatched", help="of batched, unbatched, waiting")
    parser.add_argument("--repeats", type=int, default=1, help="rounds of the modes in turn")
    parser.add_argument("--threads", type=int, help="the service's torch and FAISS threads (default: all cores)")
    parser.add_argument("--work", type=Path, help="where the copies of the index go (default: a temporary folder)")
    parser.add_argument("--runtimes", default="auto", help="this code's --runtime values to serve with (default auto)")
    parser.add_argument("--baseline", type=Path, help="a git worktree of the code to compare with (today's code)")
    args = parser.parse_args()

    tweets = crisis_tweets(args.data_dir)
    random.Random(0).shuffle(tweets)
    probes = [text for _, text in tweets[: args.probes]]
    added = tweets[args.probes: args.probes + args.add_posts]
    modes = {"batched": ["--max-batch", "64"], "unbatched": ["--max-batch", "1"],
             "waiting": ["--max-batch", "64", "--max-wait-ms", "2"]}
    threads = ["--threads", str(args.threads)] if args.threads else []
    codes = {f"this code, --runtime {runtime}": (None, ["--runtime", runtime]) for runtime in args.runtimes.split(",")}
    if args.baseline:
        codes = {"today's code": (args.baseline, []), **codes}
    print(f"index {args.index}: {json.loads((args.index / 'manifest.json').read_text())['count']} posts; "
          f"{args.clients} clients for {args.seconds:g} s; {len(probes)} probe queries; "
          f"an add of {len(added)} posts {args.add_at:g} s in")

    work = Path(tempfile.mkdtemp(prefix="bench-serve-", dir=args.work))
    try:
        add_file = work / "added.jsonl"
        add_file.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in added), encoding="utf-8")
        rates: dict[tuple[str, str, str], list[float]] = defaultdict(list)
        singles: dict[tuple[str, str], list[float]] = defaultdict(list)
        for round_number in range(1, args.repeats + 1):
            for code_name, (code, extra) in codes.items():  # codes and modes in turn: all see the machine alike
                for mode in args.modes.split(","):
                    name = f"{code_name}, {mode}" + ("" if args.repeats == 1 else f" (round {round_number})")
                    single, measured = measure_mode(name, modes[mode] + threads + extra, args, probes, work,
                                                    add_file, code)
                    singles[code_name, mode].append(single)
                    for phase, rate in measured.items():
                        rates[code_name, mode, phase].append(rate)
        for code_name in codes:
            for phase in ("steady", "add"):
                batched, unbatched = (rates.get((code_name, mode, phase)) for mode in ("batched", "unbatched"))
                if batched and unbatched:
                    print(f"{code_name}: batched / unbatched throughput, {PHASES[phase]}: median "
                          f"{statistics.median(batched) / statistics.median(unbatched):.2f}x, best "
                          f"{max(batched) / max(unbatched):.2f}x (target >= 3x; requests/s batched "
                          f"{', '.join(f'{r:.1f}' for r in batched)}, unbatched "
                          f"{', '.join(f'{r:.1f}' for r in unbatched)})")
        if args.baseline:
            for (code_name, mode, phase), measured in rates.items():
                today = rates.get(("today's code", mode, phase))
                if code_name != "today's code" and today:
                    print(f"{code_name} / today's code, {mode}, {PHASES[phase]}: median "
                          f"{statistics.median(measured) / statistics.median(today):.2f}x requests/s")
        for runtime in args.runtimes.split(","):
            profile(args.index, probes, args.single, runtime)
        once = query_once(args.index, probes, args.query_runs)
        print(f"`hicl-retrieval query` once a post: median {statistics.median(once):.2f} s, "
              f"min {min(once):.2f} s = {1 / statistics.median(once):.2f} posts/s")
        for (code_name, mode, phase), measured in rates.items():
            print(f"    {code_name}, {mode} service, {PHASES[phase]}, / query once a post: median "
                  f"{statistics.median(measured) * statistics.median(once):.0f}x")
        for (code_name, mode), p50s in singles.items():
            print(f"    {code_name}, {mode} service unloaded single post: p50 {', '.join(f'{p:.1f}' for p in p50s)} "
                  f"ms (target <= 10 ms)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
