"""What the routes share: the settings, the live index and the micro-batcher of one service."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.exceptions import HTTPException

from .batching import MicroBatcher
from .config import ServiceConfig
from .live import LiveIndex


@dataclass
class Service:
    config: ServiceConfig
    live: LiveIndex
    batcher: MicroBatcher
    stats: tuple[Any, dict] | None = None
    """A weak reference to the index version (its Retriever) `/stats` last answered for, and its figures."""


def service(request: Request) -> Service:
    """The service of the app answering `request` (a FastAPI dependency)."""
    return request.app.state.service


def writable(request: Request) -> None:
    """Refuse a change on a read-only service (a FastAPI dependency)."""
    if not service(request).config.writable:
        raise HTTPException(403, "the service is read-only: start it with --writable to add and delete posts")
