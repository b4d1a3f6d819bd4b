"""Encoding in a pool of Ray actors: every Ray call of the project is in this module.

Ray core actors, not Ray Data: the driver already reads the corpus in order and must write each
chunk's posts with its vectors, in order, through the segment writer (so that a Ray build is
the same index as a build in one process and resumes from the same ledger). What it needs from
Ray is a pool of processes that load the encoder once and encode what they are sent, replaced
when they die: actors with ``max_restarts`` and ``max_task_retries`` are exactly that, an API
stable since Ray 1.x, where Ray Data's actor pools (``compute=ActorPoolStrategy`` then
``concurrency=``) changed between releases. Ray is pinned in pyproject.toml all the same.

The driver keeps two chunks in flight per worker, each sent to the worker with the fewest, and
takes the vectors back in order. A worker that dies is restarted by Ray (it loads the encoder
again) and its chunks are run again; one that dies more than `RESTARTS` times stops the build,
which resumes from its last written chunk when run again.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections import deque
from collections.abc import Callable, Sequence

import numpy as np
import ray
import ray.util

from ..core import native
from ..core.config import DeviceConfig, EncoderConfig, RayConfig
from ..core.errors import HiclError
from .encoder import Encoder

LOG = logging.getLogger(__name__)
RESTARTS = 3
"""Times Ray restarts a worker that died (and retries its chunks) before the build stops."""
IN_FLIGHT = 2
"""Chunks sent to each worker ahead of its results: one to encode, one waiting."""
REACH_SECONDS = 5.0
"""How long a cluster's address may take to resolve, and then to accept a connection."""
RAY_CLIENT_PORT = 10001
"""The port of a ``ray://HOST`` address that names none (Ray Client's default)."""


class EncodeWorker:
    """A Ray actor holding one encoder (made into one by `ray.remote` in `RayEncoding`)."""

    def __init__(self, config: dict, device: str, dtype: str | None, threads: int, running: dict) -> None:
        native.set_threads(threads)
        self.running = DeviceConfig(**running)
        self.encoder = Encoder(EncoderConfig.from_dict(config), device=device, dtype=dtype,
                               runtime=self.running.runtime)

    def describe(self) -> dict:
        encoder = self.encoder
        return {"dim": encoder.dim, "config": encoder.config.to_dict(), "revision": encoder.revision,
                "model_bytes": encoder.model_bytes, "device": encoder.device_name,
                "host": socket.gethostname()}

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.encoder.encode(texts, batch_size=self.running.batch_size,
                                   max_tokens=self.running.max_tokens_per_batch)


def connect(settings: RayConfig) -> None:
    """Join (or start) the cluster `settings.address` names, once per process."""
    if ray.is_initialized():
        return
    address = settings.address.strip()
    options = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": True}
    if address not in ("auto", "local") and settings.cpus is not None:
        raise HiclError("--ray-cpus sizes a new local cluster; a cluster at an address has its own CPUs")
    if address != "local":
        check_answers(address)
    if address in ("auto", "local"):
        # auto: RAY_ADDRESS or the cluster `ray start` made here, else a new local one
        try:
            ray.init(address=None if address == "auto" else "local", num_cpus=settings.cpus, **options)
        except ValueError:  # an existing cluster refuses num_cpus
            ray.init(**options)
        return
    try:
        ray.init(address=address, **options)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise HiclError(f"--ray {address}: cannot join the Ray cluster ({str(exc).splitlines()[0]})") from None


def check_answers(address: str) -> None:
    """Refuse, within seconds, a cluster address (``--ray``, or for auto RAY_ADDRESS) where nothing answers.

    `ray.init` given such an address retries for about 14 minutes (20 tries of 40 s), and names
    this host's own address rather than the one given. Its timeouts are read from the environment
    when Ray is imported (too late to change here) and would be inherited by a local cluster's
    processes; so the address Ray will dial is resolved, and a TCP connection to it opened, first,
    each within `REACH_SECONDS`. A server there that is not Ray is left to Ray's own error.
    """
    given = address
    if address == "auto":
        found = os.environ.get("RAY_ADDRESS")
        given = f"auto (RAY_ADDRESS={found})" if found else "auto (the cluster `ray start` last made here)"
    try:
        dialled = _dialled(None if address == "auto" else address)
    except (ConnectionError, ValueError) as exc:
        raise HiclError(f"--ray {given}: not a cluster address ({str(exc).splitlines()[0]}); "
                        "give auto, local or HOST:PORT (e.g. 10.0.0.5:6379)") from None
    if dialled is None:
        return
    host, port = _host_port(dialled)
    why = _unanswered(host, port)
    if why:
        where = "" if dialled in (address, address.removeprefix("ray://")) else f"Ray dials {dialled}: "
        raise HiclError(f"--ray {given}: no Ray cluster answers there ({where}{why}); "
                        "start one with `ray start --head` or use --ray local")


def _dialled(address: str | None) -> str | None:
    """The HOST:PORT `ray.init(address)` connects to, or None where it starts a cluster here.

    A local host name becomes this host's address, as Ray does; ``ray://`` (Ray Client) is dialled as given.
    """
    if address is not None and address.startswith("ray://"):
        rest = address.removeprefix("ray://").rstrip("/")
        return rest if ":" in rest.lstrip("[").split("]")[-1] else f"{rest}:{RAY_CLIENT_PORT}"
    if address is not None:
        _host_port(address)  # Ray logs a traceback for an empty host before it raises
    from ray._private import services

    return services.canonicalize_bootstrap_address(address)


def _host_port(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:6379`` for IPv6) as (host, port), or ValueError."""
    host, _, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit():
        raise ValueError(f"{address!r} is not HOST:PORT")
    return host, int(port)


def _unanswered(host: str, port: int) -> str | None:
    """Why no TCP connection to `host`:`port` opens within `REACH_SECONDS` (each for the look-up and
    the connection), or None when one does."""
    found: list = []

    def look_up() -> None:
        try:
            found.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except (OSError, UnicodeError) as exc:
            found.append(exc)

    # getaddrinfo has no timeout of its own: wait for it in a thread, which is left behind if it hangs
    looking = threading.Thread(target=look_up, daemon=True)
    looking.start()
    looking.join(REACH_SECONDS)
    if not found:
        return f"the host {host} did not resolve within {REACH_SECONDS:g} s"
    if isinstance(found[0], Exception):
        return f"the host {host} is unknown: {_reason(found[0])}"
    why = "no address"
    for family, kind, proto, _, address in found[0]:
        with socket.socket(family, kind, proto) as probe:
            probe.settimeout(REACH_SECONDS)
            try:
                probe.connect(address)
                return None
            except OSError as exc:
                why = _reason(exc)
    return why


def _reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return "timed out" if isinstance(exc, TimeoutError) else text[:1].lower() + text[1:]


def _plan(running: DeviceConfig, settings: RayConfig) -> tuple[int, float, int, str]:
    """(workers, GPUs per worker, threads per worker, device) for the cluster's resources."""
    resources = ray.cluster_resources()
    cpus, gpus = resources.get("CPU", 0), resources.get("GPU", 0)
    gpus_per_worker = settings.gpus_per_worker
    if gpus_per_worker is None:
        gpus_per_worker = 1 if gpus and running.device != "cpu" else 0
    if gpus_per_worker and running.device == "cpu":
        raise HiclError("--gpus-per-worker gives workers GPUs that --device cpu would not use; drop one")
    if not gpus_per_worker and running.device not in ("auto", "cpu"):
        raise HiclError(f"--device {running.device}: the Ray workers get no GPU (the cluster has {gpus:g}); "
                        "use --device cpu or auto, or give them GPUs with --gpus-per-worker")
    threads = settings.threads or (2 if gpus_per_worker else 1)
    workers = settings.workers or (int(gpus // gpus_per_worker) if gpus_per_worker else int(cpus // threads))
    if workers < 1:
        raise HiclError(f"the Ray cluster has {cpus:g} CPUs and {gpus:g} GPUs: not enough for one worker of "
                        f"{threads} threads and {gpus_per_worker:g} GPUs")
    if workers * threads > cpus or workers * gpus_per_worker > gpus:
        raise HiclError(f"{workers} workers of {threads} threads and {gpus_per_worker:g} GPUs need "
                        f"{workers * threads} CPUs and {workers * gpus_per_worker:g} GPUs; the Ray cluster has "
                        f"{cpus:g} CPUs and {gpus:g} GPUs (set --workers, --threads or --gpus-per-worker)")
    device = running.device
    if gpus_per_worker == 0:
        device = "cpu"
    elif device == "auto":
        device = "cuda"  # Ray shows each worker only its own GPUs, numbered from 0
    return workers, gpus_per_worker, threads, device


class RayEncoding:
    """Chunks encoded by a pool of `EncodeWorker` actors, given back in order (see pools.Encoding)."""

    def __init__(self, config: EncoderConfig, running: DeviceConfig, settings: RayConfig, *,
                 dtype: str | None) -> None:
        connect(settings)
        workers, gpus, threads, device = _plan(running, settings)
        actor = ray.remote(EncodeWorker).options(num_cpus=threads, num_gpus=gpus, max_restarts=RESTARTS,
                                                 max_task_retries=RESTARTS)
        running_fields = {"device": device, "dtype": running.dtype, "batch_size": running.batch_size,
                          "max_tokens_per_batch": running.max_tokens_per_batch, "runtime": running.runtime}
        self.workers = [actor.remote(config.to_dict(), device, dtype, threads, running_fields)
                        for _ in range(workers)]
        described = [self._get(ref) for ref in [worker.describe.remote() for worker in self.workers]]
        if len({str(sorted(d["config"].items())) for d in described}) > 1:
            precisions = sorted({d["config"]["dtype"] for d in described})
            raise HiclError(f"the Ray workers resolved the encoder differently (precisions {', '.join(precisions)}): "
                            "pass --dtype so that all of them encode alike")
        first = described[0]
        self.dim, self.revision, self.model_bytes = first["dim"], first["revision"], first["model_bytes"]
        self.config = EncoderConfig.from_dict(first["config"])
        devices = sorted({d["device"] for d in described})
        hosts = len({d["host"] for d in described})
        self.where = f"Ray: {workers} worker(s) on {hosts} host(s), each on {' or '.join(devices)}"
        LOG.info("%s", self.where)

    def _get(self, ref):
        try:
            return ray.get(ref)
        except (ray.exceptions.RayTaskError, ray.exceptions.RayActorError) as exc:
            raise _worker_error(exc) from None

    def encoded(self, items, texts, progress=None):
        in_flight: deque = deque()
        load = [0] * len(self.workers)
        source = iter(items)
        exhausted = False
        while True:
            while not exhausted and len(in_flight) < IN_FLIGHT * len(self.workers):
                item = next(source, None)
                if item is None:
                    exhausted = True
                    break
                chosen = texts(item)
                if not chosen:
                    in_flight.append((item, None, None))
                    continue
                worker = min(range(len(self.workers)), key=load.__getitem__)
                load[worker] += 1
                in_flight.append((item, self.workers[worker].encode.remote(list(chosen)), worker))
            if not in_flight:
                return
            item, ref, worker = in_flight.popleft()
            if ref is None:
                yield item, np.empty((0, self.dim), dtype=np.float32)
                continue
            vectors = self._get(ref)
            load[worker] -= 1
            if progress is not None:
                progress.update(len(vectors))
            yield item, vectors

    def close(self) -> None:
        for worker in self.workers:
            ray.kill(worker)
        self.workers = []


class JobWorker:
    """A Ray actor (made into one by `ray.remote` in `RayJobs`) that sets itself up once, then runs jobs."""

    def __init__(self, setup: Callable[[int, str], None], threads: int, device: str) -> None:
        setup(threads, device)

    def run(self, function: Callable, job: object) -> object:
        return function(job)


class RayJobs:
    """A pool of `JobWorker` actors on the cluster, sized as `RayEncoding`'s: each is set up by `setup(threads,
    device)` (in a parallel build: its encoder) and runs `function(job)` for the jobs it is sent. A worker that
    dies is restarted and its job run again (a shard resumes from its ledger), `RESTARTS` times at most."""

    def __init__(self, settings: RayConfig, running: DeviceConfig, setup: Callable[[int, str], None]) -> None:
        connect(settings)
        workers, gpus, threads, device = _plan(running, settings)
        actor = ray.remote(JobWorker).options(num_cpus=threads, num_gpus=gpus, max_restarts=RESTARTS,
                                              max_task_retries=RESTARTS)
        self.workers = [actor.remote(setup, threads, device) for _ in range(workers)]
        self.where = f"Ray: {workers} worker(s) of {threads} threads, on {device}"

    def __enter__(self) -> RayJobs:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for worker in self.workers:
            ray.kill(worker)
        self.workers = []

    def run(self, function: Callable, jobs: Sequence) -> list:
        """`function` of each of `jobs`, in the order of `jobs`."""
        pool = ray.util.ActorPool(self.workers)
        try:
            return list(pool.map(lambda worker, job: worker.run.remote(function, job), list(jobs)))
        except (ray.exceptions.RayTaskError, ray.exceptions.RayActorError) as exc:
            raise _worker_error(exc) from None


def _worker_error(exc: Exception) -> HiclError:
    """A Ray worker's failure in one line: its own error (a `HiclError` as it was), or its death."""
    if isinstance(exc, ray.exceptions.RayActorError):
        return HiclError(f"a Ray worker died {RESTARTS + 1} times ({str(exc).splitlines()[0]}); what was written "
                         "is kept: run the same command again to resume")
    cause = exc.cause if isinstance(getattr(exc, "cause", None), Exception) else exc
    if isinstance(cause, HiclError):
        return HiclError(f"a Ray worker: {cause}")
    return HiclError(f"a Ray worker failed: {type(cause).__name__}: {str(cause).splitlines()[0]}")
