"""Changing the index over HTTP (only on a service started with --writable): POST /add and POST /delete.

Posts are handed to the library as records, not written to a file and read back: each is read as
the JSON reader reads one object, every post that cannot be added is named by its place in the
request (``posts[3]: text is empty``) and the request is refused whole (422), so a client either
adds all it sent (less the post ids the index holds) or nothing. An added post's source is
``http`` and the time it came.
"""

from __future__ import annotations

from datetime import datetime, timezone

from fastapi import APIRouter, Depends
from starlette.exceptions import HTTPException

from ...core.config import ReaderConfig
from ...core.errors import HiclError
from ...core.times import check_time_format
from ...corpus import Post, Records
from ...corpus.objects import problems
from ...workflows.update import add_records, delete_posts
from ..schemas import AddRequest, DeleteRequest, to_filter
from ..state import Service, service, writable

router = APIRouter(dependencies=[Depends(writable)])

SHOWN_PROBLEMS = 20


@router.post("/add")
def add(body: AddRequest, served: Service = Depends(service)) -> dict:
    if not body.posts:
        raise HiclError("posts: give at least one post")
    source = f"http {datetime.now(timezone.utc).isoformat(timespec='seconds').replace('+00:00', 'Z')}"
    check_time_format(body.time_format, "time_format")
    records = list(Records(body.posts, source, ReaderConfig(format="jsonl", time_format=body.time_format)))
    found = problems(records, time_hint="write it in ISO 8601 or name its format in the request's time_format "
                                        "(a strptime format such as %d/%m/%Y %H:%M, unix or unix_ms)")
    if found:
        more = f"; and {len(found) - SHOWN_PROBLEMS} more" if len(found) > SHOWN_PROBLEMS else ""
        raise HTTPException(422, f"nothing added: {'; '.join(found[:SHOWN_PROBLEMS])}{more}")
    retriever = served.live.retriever  # its encoder and directory never change
    report = add_records(retriever.directory.path, [record for record in records if isinstance(record, Post)],
                         source=source, encoder=retriever.encoder)
    return {"read": report.read, "added": report.added, "known": report.known, "source": source,
            "warnings": report.warnings}


@router.post("/delete")
def delete(body: DeleteRequest, served: Service = Depends(service)) -> dict:
    where = to_filter(body.filter)
    post_ids = [str(post_id) for post_id in body.post_ids]
    return {"deleted": delete_posts(served.live.retriever.directory.path, post_ids=post_ids, filter=where)}
