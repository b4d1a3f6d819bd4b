"""The serve command: the HTTP search service of one index (pip install 'hicl-retrieval[serve]')."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.errors import HiclError
from . import options


def register(commands) -> None:
    serve = commands.add_parser("serve", help="answer searches of an index over HTTP (OpenAPI at /docs)")
    options.add_index(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    serve.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    serve.add_argument("--token-file", help="file holding a bearer token every request but /health must carry")
    serve.add_argument("--writable", action="store_true",
                       help="let POST /add and POST /delete change the index (else they answer 403)")
    serve.add_argument("--max-k", type=int, default=1000, help="largest k a search may ask (default: 1000)")
    serve.add_argument("--max-body-bytes", type=int, default=1 << 20, help="largest request body (default: 1 MiB)")
    serve.add_argument("--max-batch", type=int, default=64,
                       help="queries of concurrent searches encoded together at most; 1: no batching (default: 64)")
    serve.add_argument("--max-wait-ms", type=float, default=2.0,
                       help="how long a search waits for others to batch with (default: 2 ms)")
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


def _serve(args: argparse.Namespace) -> None:
    from ..core.bounds import COUNT, Bounds, check

    check("--port", args.port, Bounds(low=1, high=65535, integer=True))
    check("--max-k", args.max_k, COUNT)
    check("--max-body-bytes", args.max_body_bytes, COUNT)
    check("--max-batch", args.max_batch, COUNT)
    check("--max-wait-ms", args.max_wait_ms, Bounds(low=0, high=1000))
    try:
        import uvicorn

        from ..service.app import ServiceConfig, create_app
    except ImportError as exc:
        raise HiclError(f"serve needs FastAPI and uvicorn ({exc}): pip install 'hicl-retrieval[serve]'") from None
    from ..core import native

    native.set_threads(args.threads)
    config = ServiceConfig(max_k=args.max_k, max_body_bytes=args.max_body_bytes, token=_token(args.token_file),
                           max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, writable=args.writable)
    app = create_app(args.index, running=options.device_of(args), config=config)
    print(f"serving {args.index} at http://{args.host}:{args.port} (OpenAPI at /docs)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
