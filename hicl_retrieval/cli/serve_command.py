"""The serve command: the HTTP search service of one index (pip install 'hicl-retrieval[serve]')."""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
from pathlib import Path

from ..core.errors import HiclError
from . import options


def register(commands) -> None:
    serve = commands.add_parser("serve", help="answer searches of an index over HTTP (OpenAPI at /docs)")
    options.add_index(serve)
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default: 127.0.0.1, this machine only); another address needs "
                            "--token-file to take --writable")
    serve.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    serve.add_argument("--token-file", help="file holding a bearer token every request but /health and the page "
                                            "must carry")
    serve.add_argument("--writable", action="store_true",
                       help="let POST /add and POST /delete change the index (else they answer 403)")
    serve.add_argument("--max-k", type=int, default=1000, help="largest k a search may ask (default: 1000)")
    serve.add_argument("--max-hits", type=int, default=10_000,
                       help="largest queries x k of one request (default: 10000)")
    serve.add_argument("--max-body-bytes", type=int, default=1 << 20, help="largest request body (default: 1 MiB)")
    serve.add_argument("--max-batch", type=int, default=64,
                       help="queries of concurrent searches encoded together at most; 1: no batching (default: 64)")
    serve.add_argument("--max-wait-ms", type=float, default=0.0,
                       help="how long a search waits for others to batch with (default: 0, a batch is what "
                            "queued while the last one was encoded)")
    serve.add_argument("--timeout", type=float, default=60.0,
                       help="seconds a search may wait and run before it is answered 503 and dropped (default: 60)")
    serve.add_argument("--body-timeout", type=float, default=10.0,
                       help="seconds a request's body may take to arrive before it is answered 408 (default: 10)")
    options.add_threads(serve)
    options.add_device(serve)
    serve.set_defaults(run=_serve)


def _token(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise HiclError(f"--token-file {path}: cannot be read ({exc.__class__.__name__})") from None
    if not token:
        raise HiclError(f"--token-file {path} is empty")
    return token


def is_loopback(host: str) -> bool:
    """Whether every address `host` names is this machine's loopback (127.0.0.0/8, ::1)."""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except (socket.gaierror, UnicodeError):
        return False
    return bool(addresses) and all(ipaddress.ip_address(address.split("%")[0]).is_loopback for address in addresses)


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to `host`:`port` and listening, or a one-line `HiclError` saying why not."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise HiclError(f"--host {host}: not an address of this machine ({exc})") from None
    family, kind, proto, _, address = infos[0]
    listener = socket.socket(family, kind, proto)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(2048)
    except OSError as exc:
        listener.close()
        raise HiclError(f"cannot listen on {host} port {port}: {exc.strerror or exc}; "
                        "choose another --port (or stop what holds it)") from None
    return listener


def _serve(args: argparse.Namespace) -> None:
    from ..core.bounds import Bounds, check

    check("--port", args.port, Bounds(low=1, high=65535, integer=True))
    try:
        import uvicorn

        from ..service.app import create_app
        from ..service.config import ServiceConfig
    except ImportError as exc:
        raise HiclError(f"serve needs FastAPI and uvicorn ({exc}): pip install 'hicl-retrieval[serve]'") from None
    from ..core import native

    config = ServiceConfig(max_k=args.max_k, max_hits=args.max_hits, max_body_bytes=args.max_body_bytes,
                           token=_token(args.token_file), max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                           timeout_s=args.timeout, body_timeout_s=args.body_timeout,
                           writable=args.writable)
    if config.token is None and not is_loopback(args.host):
        if args.writable:
            raise HiclError(f"--writable on --host {args.host} would let anyone who reaches it change the index: "
                            "give --token-file, or serve on 127.0.0.1")
        print(f"hicl-retrieval: warning: serving {args.host} without --token-file: anyone who reaches it can "
              "search the index", file=sys.stderr, flush=True)
    listener = listening_socket(args.host, args.port)
    native.set_threads(args.threads)
    app = create_app(args.index, running=options.device_of(args), config=config)
    print(f"serving {args.index} at http://{args.host}:{args.port} (OpenAPI at /docs)", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    server.run(sockets=[listener])
