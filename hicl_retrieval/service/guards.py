"""What every request meets before a route reads it, and how every error becomes a JSON answer.

The token is checked first, before the body is read or validated, so a request without it learns
nothing (not even that its body is malformed) and costs nothing; then the body's size. Errors
become ``{"error": "..."}``: the request's fault 4xx, the index's (`IndexDamaged`) or the load's
(`Busy`) 503, and anything unforeseen a logged 500 that still answers JSON.
"""

from __future__ import annotations

import asyncio
import hmac
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ..core.errors import HiclError, IndexDamaged
from .batching import Busy
from .config import ServiceConfig

LOG = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/health", "/"})
"""Paths that answer without the token: the health check and the page, which holds no data (its searches send it)."""


def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class Guard:
    """ASGI middleware: the bearer token (compared in constant time), then the body, read whole up to its size
    limit and within its time limit."""

    def __init__(self, app, config: ServiceConfig) -> None:
        self.app, self.config = app, config
        self.expected = None if config.token is None else f"Bearer {config.token}".encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])  # names are lower-case bytes; the last of repeated ones wins
        if self.expected is not None and scope["path"] not in OPEN_PATHS:
            if not hmac.compare_digest(headers.get(b"authorization", b""), self.expected):
                await error(401, "a bearer token is required: send 'Authorization: Bearer TOKEN'",
                            {"WWW-Authenticate": "Bearer"})(scope, receive, send)
                return
        limit = self.config.max_body_bytes
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await error(413 if declared.isdigit() else 400,
                        f"the body is over {limit} bytes" if declared.isdigit() else
                        "the Content-Length header is not a number")(scope, receive, send)
            return
        body, more = b"", True
        deadline = asyncio.get_running_loop().time() + self.config.body_timeout_s
        while more:
            try:
                message = await asyncio.wait_for(receive(), deadline - asyncio.get_running_loop().time())
            except asyncio.TimeoutError:  # a client that declared more than it sends must not hold us
                await error(408, f"the body did not arrive within {self.config.body_timeout_s:g} s "
                                 "(is its Content-Length right?)")(scope, receive, send)
                return
            if message["type"] == "http.disconnect":
                return  # the client left before sending its body
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > limit:
                await error(413, f"the body is over {limit} bytes")(scope, receive, send)
                return
        await self.app(scope, _replaying(body, receive), send)


def _replaying(body: bytes, receive):
    """A `receive` that gives `body` whole once, then what the client sends next (its disconnect)."""
    given = False

    async def replay():
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def validation_message(exc: RequestValidationError) -> str:
    """The problems pydantic found, each at its place written as JSON paths are (``filter[0].value: ...``)."""
    problems = []
    for problem in exc.errors():
        where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in problem.get("loc", ())[1:])
        problems.append(f"{where.lstrip('.') or 'the body'}: {problem.get('msg')}")
    return "; ".join(dict.fromkeys(problems))


def install_error_answers(app: FastAPI) -> None:
    """Every error as ``{"error": ...}`` with the status that says whose fault it is."""

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error(422, validation_message(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(HiclError)
    async def refused(request: Request, exc: HiclError) -> JSONResponse:
        if isinstance(exc, IndexDamaged):
            return error(503, f"the index cannot answer: {exc}")
        return error(503 if isinstance(exc, Busy) else 400, str(exc))

    @app.exception_handler(Exception)
    async def unforeseen(request: Request, exc: Exception) -> JSONResponse:
        LOG.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return error(500, f"the service failed ({type(exc).__name__}); its log has the details")
