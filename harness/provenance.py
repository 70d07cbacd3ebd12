"""Provenance and cost: what produced an artifact and what it cost."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parent.parent


def git_commit() -> dict:
    """The commit of the harness checkout (and whether it had local changes), or nulls when not a checkout."""
    try:
        commit = subprocess.run(["git", "-C", str(_REPO_ROOT), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(_REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip() != ""
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def environment() -> dict:
    """Versions of the harness and of the libraries that can change results."""
    import numpy

    import filterbench

    env = {"harness_version": filterbench.__version__, "python": platform.python_version(),
           "numpy": numpy.__version__, "platform": platform.platform()}
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        env["torch"] = torch.__version__
        env["cuda"] = torch.version.cuda if torch.cuda.is_available() else None
        env["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return env


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _children_peak_mb() -> float:
    """The largest resident size any finished child process reached (a lifetime figure, never reset)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0  # KiB on Linux


def _own_peak_mb() -> float:
    """This process's resident high-water mark since the last :func:`_reset_own_peak` (VmHWM), or, where
    /proc cannot reset it, since the process started."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _reset_own_peak() -> bool:
    """Reset this process's high-water mark to its current resident size (Linux: ``5`` > clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


#: meters running in this process, outermost first (a fit stage runs inside a score stage)
_ACTIVE: list["CostMeter"] = []


@dataclass
class CostMeter:
    """Measures wall, CPU (this process and finished children), GPU seconds and peak memory of a stage.

    GPU seconds are wall seconds during which the stage used a GPU (set ``used_gpu``), as DataComp reports
    compute; extra CPU seconds of workers that report their own usage can be added with :meth:`add_cpu`.

    Peak memory is the stage's own: the process's high-water mark is reset when the meter starts, so memory
    an earlier stage of the same process used is not counted (where /proc allows it; elsewhere it is the
    process's peak so far).  A meter started inside another hands its peak to the outer one.  Child processes
    count when the largest child's peak grew during the stage (the kernel keeps one lifetime figure for all
    children).
    """

    used_gpu: bool = False
    extra_cpu: float = 0.0
    _wall0: float = field(default=0.0, repr=False)
    _cpu0: float = field(default=0.0, repr=False)
    _children0: float = field(default=0.0, repr=False)
    _seen_mb: float = field(default=0.0, repr=False)

    def __enter__(self) -> "CostMeter":
        before = _own_peak_mb()
        for outer in _ACTIVE:  # the reset below would otherwise hide the outer stages' peak so far
            outer._seen_mb = max(outer._seen_mb, before)
        _reset_own_peak()
        _ACTIVE.append(self)
        self._wall0, self._cpu0, self._children0 = time.perf_counter(), _cpu_seconds(), _children_peak_mb()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_s = time.perf_counter() - self._wall0
        self.cpu_s = _cpu_seconds() - self._cpu0 + self.extra_cpu
        children = _children_peak_mb()
        self.peak_rss_mb = max(self._seen_mb, _own_peak_mb(), children if children > self._children0 else 0.0)
        if self in _ACTIVE:
            _ACTIVE.remove(self)
        for outer in _ACTIVE:
            outer._seen_mb = max(outer._seen_mb, self.peak_rss_mb)

    def add_cpu(self, seconds: float) -> None:
        self.extra_cpu += seconds

    def as_dict(self) -> dict:
        return {"wall_s": round(self.wall_s, 3), "cpu_s": round(self.cpu_s, 3),
                "gpu_s": round(self.wall_s, 3) if self.used_gpu else 0.0,
                "peak_rss_mb": round(self.peak_rss_mb, 1), "cpu_count": os.cpu_count()}
