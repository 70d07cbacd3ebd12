"""Exclusive build locks that wait: concurrent commands in one store queue up instead of failing.

A lock is an ``flock`` on a small file outside the folder it protects (the folder is renamed while locked, so
it cannot hold its own lock).  A process that finds the lock taken says once on stderr what it waits for and
polls until the holder releases it, or fails after ``FILTERBENCH_LOCK_TIMEOUT`` seconds (default 24 h) with one
line naming the lock.  The holder removes the file when it releases the lock; a waiter that then holds a lock
on the removed file notices (its descriptor no longer matches the path) and tries again, so two processes
never both hold "the" lock.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from pathlib import Path
from typing import IO

from filterbench.harness.errors import StoreError

DEFAULT_TIMEOUT_S = 24 * 3600.0
log = logging.getLogger("filterbench.store")


def lock_timeout() -> float:
    """Seconds a command waits for another one's lock (``FILTERBENCH_LOCK_TIMEOUT``)."""
    raw = os.environ.get("FILTERBENCH_LOCK_TIMEOUT")
    try:
        return float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        raise StoreError(f"FILTERBENCH_LOCK_TIMEOUT={raw!r} is not a number of seconds") from None


class BuildLock:
    """An exclusive lock on ``path``, waiting up to ``timeout`` seconds for another holder.

    Args:
        path: the lock file (its folder is created).
        what: what the lock protects, for the waiting message and the timeout error.
    """

    def __init__(self, path: Path, what: str, timeout: float | None = None):
        self.path, self.what = Path(path), what
        self.timeout = lock_timeout() if timeout is None else timeout
        self._handle: IO[str] | None = None

    def acquire(self) -> "BuildLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        started, delay, announced = time.monotonic(), 0.05, False
        while True:
            handle = open(self.path, "a+", encoding="utf-8")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(handle)
                handle.close()
                waited = time.monotonic() - started
                if waited >= self.timeout:
                    raise StoreError(f"{self.what}: still locked by another process{holder} after waiting "
                                     f"{waited:.0f} s (lock {self.path}; FILTERBENCH_LOCK_TIMEOUT sets the wait)")
                if not announced:
                    log.warning("waiting for another process%s building %s (up to %.0f s)", holder, self.what,
                                self.timeout)
                    announced = True
                time.sleep(min(delay, max(0.0, self.timeout - waited)))
                delay = min(delay * 2, 1.0)
                continue
            if _same_file(handle, self.path):
                try:  # the holder's pid, for a waiter's message (best effort: a full disk must not stop us)
                    handle.seek(0)
                    handle.truncate()
                    handle.write(f"{os.getpid()}\n")
                    handle.flush()
                except OSError:
                    pass
                self._handle = handle
                return self
            handle.close()  # the holder removed the file while we waited: lock the new one

    def release(self) -> None:
        if self._handle is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still holding it, so waiters re-open a fresh file
        finally:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> "BuildLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _same_file(handle: IO[str], path: Path) -> bool:
    try:
        return os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _read_holder(handle: IO[str]) -> str:
    try:
        handle.seek(0)
        pid = handle.read().strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""
