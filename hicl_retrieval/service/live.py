"""The index a service answers from: reopened when its manifest switches, and what is wrong with it, if anything."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from ..core.config import DeviceConfig
from ..core.errors import HiclError, IndexDamaged
from ..encoding.encoder import Encoder
from ..index.manifest import MANIFEST
from ..workflows.search import Retriever


class _Version:
    """One opened version of the index: its retriever, who uses it now, and whether a newer one replaced it."""

    def __init__(self, retriever: Retriever) -> None:
        self.retriever = retriever
        self.use = threading.Lock()
        """Held by the one request reading this version's files (its DuckDB connection serves one thread at a time)."""
        self.users = 0
        self.retired = False


class LiveIndex:
    """The retriever of the index as its manifest now names it, reopened when the manifest changes.

    The service follows its index: when the manifest has been switched (by an ``add``, ``delete``,
    ``compact`` or ``reindex`` of any process), the next request opens the new version, once, with the
    same encoder, and the old one is closed when the last request reading it is done; a request always
    answers from one whole version. The lock that guards the switch is held only to check the manifest
    and open a version, never across a search, and encoding needs no version at all (`encoder`), so the
    service encodes some queries while it searches others. A new manifest that cannot be opened, or
    damage met while answering, is the index's fault, not the request's: it is raised as `IndexDamaged`
    (503) and kept in `problem` for /health until a version opens again.
    """

    def __init__(self, retriever: Retriever, running: DeviceConfig | None) -> None:
        self.running = running
        self.version = _Version(retriever)
        self.switch = threading.Lock()
        self.seen = self._manifest_stamp()
        self.problem: str | None = None

    @property
    def retriever(self) -> Retriever:
        """The newest version's retriever, for what never changes across versions (its directory, its manifest's
        count for /health); read posts through `current`."""
        return self.version.retriever

    @property
    def encoder(self) -> Encoder:
        """The index's encoder, shared by every version."""
        return self.version.retriever.encoder

    def _manifest_stamp(self) -> tuple[int, int, int] | None:
        """What tells one manifest from the next (a switch renames a new file into place); None
        when it cannot be read, and the open index keeps answering from the files it holds."""
        try:
            stat = os.stat(self.retriever.directory.file(MANIFEST))
        except OSError:
            return None
        return stat.st_ino, stat.st_mtime_ns, stat.st_size

    def _newest(self) -> _Version:
        """The version of the manifest there now, opened if it is new; taken for one more user."""
        with self.switch:
            stamp = self._manifest_stamp()
            if stamp is not None and stamp != self.seen:
                old = self.version
                try:
                    opened = Retriever(old.retriever.directory.path, encoder=old.retriever.encoder,
                                       running=self.running)
                except HiclError as exc:
                    self.problem = str(exc)
                    raise IndexDamaged(f"the index's new version cannot be opened: {exc}") from None
                self.version, self.seen, self.problem = _Version(opened), stamp, None
                old.retired = True
                if old.users == 0:
                    old.retriever.close()
            self.version.users += 1
            return self.version

    def _release(self, version: _Version) -> None:
        with self.switch:
            version.users -= 1
            if version.retired and version.users == 0:
                version.retriever.close()

    @contextmanager
    def current(self) -> Iterator[Retriever]:
        """The retriever of the index's current manifest, read by this request alone while it holds it."""
        version = self._newest()
        try:
            with version.use:
                yield version.retriever
        except IndexDamaged as exc:
            self.problem = str(exc)
            raise
        finally:
            self._release(version)

    def check(self) -> str | None:
        """What is wrong with the index now (its manifest, the sizes of its files, damage met meanwhile), or None."""
        try:
            with self.current() as retriever:
                retriever.directory.read_manifest()
        except HiclError as exc:
            return str(exc)
        return self.problem
