"""The index a service answers from: reopened when its manifest switches, and what is wrong with it, if anything."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from ..core.config import DeviceConfig
from ..core.errors import HiclError, IndexDamaged
from ..index.manifest import MANIFEST
from ..workflows.search import Retriever


class LiveIndex:
    """The retriever of the index as its manifest now names it, reopened when the manifest changes.

    The service follows its index: when the manifest has been switched (by an ``add``, ``delete``,
    ``compact`` or ``reindex`` of any process), the next request opens the new index with the same
    encoder and the old one is closed; a request always answers from one whole index. A new
    manifest that cannot be opened, or damage met while answering, is the index's fault, not the
    request's: it is raised as `IndexDamaged` (503) and kept in `problem` for /health until an
    index opens again.
    """

    def __init__(self, retriever: Retriever, running: DeviceConfig | None) -> None:
        self.retriever, self.running = retriever, running
        self.lock = threading.Lock()
        self.seen = self._manifest_stamp()
        self.problem: str | None = None

    def _manifest_stamp(self) -> tuple[int, int, int] | None:
        """What tells one manifest from the next (a switch renames a new file into place); None
        when it cannot be read, and the open index keeps answering from the files it holds."""
        try:
            stat = os.stat(self.retriever.directory.file(MANIFEST))
        except OSError:
            return None
        return stat.st_ino, stat.st_mtime_ns, stat.st_size

    @contextmanager
    def current(self) -> Iterator[Retriever]:
        """The retriever of the index's current manifest, held for one request."""
        with self.lock:
            stamp = self._manifest_stamp()
            if stamp is not None and stamp != self.seen:
                old = self.retriever
                try:
                    self.retriever = Retriever(old.directory.path, encoder=old.encoder, running=self.running)
                except HiclError as exc:
                    self.problem = str(exc)
                    raise IndexDamaged(f"the index's new version cannot be opened: {exc}") from None
                self.seen, self.problem = stamp, None
                old.close()
            try:
                yield self.retriever
            except IndexDamaged as exc:
                self.problem = str(exc)
                raise

    def check(self) -> str | None:
        """What is wrong with the index now (its manifest, the sizes of its files, damage met meanwhile), or None."""
        try:
            with self.current() as retriever:
                retriever.directory.read_manifest()
        except HiclError as exc:
            return str(exc)
        return self.problem
