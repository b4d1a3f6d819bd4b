"""GET /: the search page, one static file that calls /search like any client."""

from __future__ import annotations

import importlib.resources
from functools import lru_cache

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter()


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def page() -> HTMLResponse:
    """The search page; it holds no data, so it needs no token (its calls to /search do)."""
    return HTMLResponse(_page())


@lru_cache(maxsize=1)
def _page() -> str:
    return importlib.resources.files("hicl_retrieval.service").joinpath("page.html").read_text(encoding="utf-8")
