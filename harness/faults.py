"""Fault points: named moments at which the fault-injection tests kill the process (``kill -9``).

The store and every atomic writer call :func:`point` between the steps that must survive a kill (a temporary
file written but not renamed, a unit's file renamed but its marker not written, a manifest written but the
folder not renamed, ...).  Unarmed (always, outside tests) a point is one global lookup.  A test arms the
points in a forked child with :func:`arm` (``kill_at=n``: the ``n``-th point reached sends SIGKILL to the
process itself, so nothing is flushed or cleaned up) or counts them with ``kill_at=None``
(:func:`hits` afterwards); see ``tests/harness/test_fault_injection.py``.
"""

from __future__ import annotations

import os
import signal

_armed: dict | None = None


def arm(kill_at: int | None = None) -> None:
    """Count fault points from now on; with ``kill_at``, SIGKILL this process at that point (1-based)."""
    global _armed
    _armed = {"kill_at": kill_at, "hits": 0, "names": []}


def disarm() -> list[str]:
    """Stop counting; returns the names of the points reached while armed, in order."""
    global _armed
    names = _armed["names"] if _armed else []
    _armed = None
    return names


def hits() -> int:
    return _armed["hits"] if _armed else 0


def point(name: str) -> None:
    """A moment at which a kill must leave the store recoverable (no-op unless a test armed the points)."""
    if _armed is None:
        return
    _armed["hits"] += 1
    _armed["names"].append(name)
    if _armed["kill_at"] == _armed["hits"]:
        os.kill(os.getpid(), signal.SIGKILL)
