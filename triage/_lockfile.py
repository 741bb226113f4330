"""A lock file that the writers of one SQLite database, in every process, queue on.

SQLite's busy handler makes a writer that finds the database locked sleep and poll (1, 2, 5, 10 ...
100 ms), so the worker processes of a server took turns with sleeps between them. A writer that
holds this lock (``flock`` on a file beside the database) first is woken by the kernel as soon as the
one before it lets go. The database's own lock still excludes any writer that does not take it.
"""

from __future__ import annotations

import fcntl
import os
import threading
from contextlib import contextmanager
from typing import Iterator, Optional


class LockFile:
    """``path`` (created 0600 on first use): :meth:`held` excludes every other holder, threads of this
    process included. Where it cannot be made (a read-only folder), :meth:`held` excludes this
    process's threads only, and the database's own lock serialises the rest."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._setup = threading.Lock()
        self._pid: Optional[int] = None
        self._fd: Optional[int] = None
        self._threads = threading.Lock()   # flock excludes other processes, not this one's threads

    def _mine(self) -> tuple[Optional[int], threading.Lock]:
        """This process's descriptor and thread lock: a forked worker opens its own (a descriptor
        shared across a fork would share the lock, and a thread lock may have been held at the fork)."""
        if self._pid != os.getpid():
            with self._setup:
                if self._pid != os.getpid():
                    try:
                        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                    except OSError:
                        self._fd = None
                    self._threads = threading.Lock()
                    self._pid = os.getpid()
        return self._fd, self._threads

    @contextmanager
    def held(self) -> Iterator[None]:
        fd, threads = self._mine()
        with threads:
            if fd is None:
                yield
                return
            fcntl.flock(fd, fcntl.LOCK_EX)   # blocks without the GIL until the holder before lets go
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Close this process's descriptor; the next :meth:`held` opens it again."""
        with self._setup, self._threads:
            if self._pid == os.getpid() and self._fd is not None:
                os.close(self._fd)
            self._pid = self._fd = None
