"""The search service: one `Retriever`, opened once, answering JSON over HTTP (FastAPI).

The encoder loads when the service starts, not per request. Searches go through one thread
that encodes those arriving together as one batch (batching.py); the index follows its manifest
(live.py). Routes are grouped by concern (routes/); every request meets the token and the body
limit first, and every error is a JSON answer (guards.py).
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from ..core.config import DeviceConfig
from ..workflows.search import Retriever
from .batching import MicroBatcher
from .config import ServiceConfig
from .guards import Guard, install_error_answers
from .live import LiveIndex
from .routes import ROUTERS
from .state import Service


def create_app(index: str | Path, *, running: DeviceConfig | None = None, config: ServiceConfig | None = None,
               retriever: Retriever | None = None) -> FastAPI:
    """The service of the index at `index` (its `Retriever` made here, or `retriever`)."""
    config = config or ServiceConfig()
    live = LiveIndex(retriever or Retriever(index, running=running), running)
    batcher = MicroBatcher(live, max_batch=config.max_batch, max_wait=config.max_wait_ms / 1000,
                           max_pending=config.max_pending)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        batcher.close()

    app = FastAPI(title="hicl-retrieval", summary="top-k topically related posts of an index", lifespan=lifespan)
    app.state.service = Service(config, live, batcher)
    for router in ROUTERS:
        app.include_router(router)
    install_error_answers(app)
    app.add_middleware(Guard, config=config)
    return app
