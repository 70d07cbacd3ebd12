"""Reference training in worker processes: the launcher (:class:`TrainingJobs`) and the worker entry point.

``python -m filterbench.harness.nano.refjob JOB.json`` trains one reference model.  The job file names the role,
its :class:`world.RefTraining` fields, the seed, the folder holding the clean sample (``images.npy``,
``labels.npz``, ``texts.json``), the checkpoint to write and where to put the log.

Workers are fresh interpreters, not forks or spawns of the caller: no inherited OpenMP state, and no re-import
of the caller's ``__main__`` (which breaks scripts without a main guard).  The launcher runs them from a
background thread, so the build renders the pool and the eval suite while the models train.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from filterbench.harness.nano.world import NanoConfig, RefTraining

ROLES = ("l14", "b32", "dino")
# measured training cost per sample seen, one thread (ms): the DINOv2 role passes two views of each image
_MS_PER_SAMPLE = {"l14": 2.0, "b32": 1.0, "dino": 1.7}


def launch_order(cfg: NanoConfig) -> list[str]:
    """Roles, longest job first, so that the jobs of two workers end close together."""
    return sorted(ROLES, key=lambda role: -_MS_PER_SAMPLE[role] * cfg.ref(role).samples)


def workers() -> int:
    """Processes for reference training: ``FILTERBENCH_NANO_WORKERS`` or one per core, at most 2."""
    return max(1, int(os.environ.get("FILTERBENCH_NANO_WORKERS", min(2, os.cpu_count() or 1))))


class TrainingJobs:
    """Train the three reference models in the background; :meth:`join` waits and returns their logs."""

    def __init__(self, models_dir: Path, cfg: NanoConfig, sample: dict):
        models_dir.mkdir(parents=True, exist_ok=True)
        self._tmp = tempfile.TemporaryDirectory(prefix="nano-ref-")
        data = Path(self._tmp.name)
        np.save(data / "images.npy", sample["images"])
        np.savez(data / "labels.npz", **{f"image_{k}": v for k, v in sample["labels"].items()},
                 **{f"text_{k}": v for k, v in sample["text_labels"].items()})
        (data / "texts.json").write_text(json.dumps(sample["texts"]))
        self._data = data
        self._jobs = [_job_file(data, models_dir, cfg, role) for role in launch_order(cfg)]
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            _run_jobs(list(self._jobs))
        except BaseException as exc:  # noqa: BLE001 - re-raised in join(), in the caller's thread
            self._error = exc

    def join(self) -> dict:
        self._thread.join()
        try:
            if self._error is not None:
                raise self._error
            logs = [json.loads((self._data / f"{role}.log.json").read_text()) for role in ROLES]
            return {log["role"]: log for log in logs}
        finally:
            self._tmp.cleanup()


def _run_jobs(queue: list[Path]) -> None:
    """Run job files with at most :func:`workers` processes at once; fail fast if one fails."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    running: dict[Path, subprocess.Popen] = {}
    try:
        while queue or running:
            while queue and len(running) < workers():
                job = queue.pop(0)
                running[job] = subprocess.Popen([sys.executable, "-m", __name__, str(job)], env=env)
            time.sleep(0.2)
            for job, process in list(running.items()):
                if process.poll() is None:
                    continue
                del running[job]
                if process.returncode != 0:
                    raise RuntimeError(f"reference training failed ({job.name}, exit {process.returncode})")
    finally:
        for process in running.values():
            process.kill()


def _job_file(data: Path, models_dir: Path, cfg: NanoConfig, role: str) -> Path:
    spec = cfg.ref(role)
    job = {"role": role, "spec": dataclasses.asdict(spec), "seed": cfg.seed, "data": str(data),
           "out": str(models_dir / f"{spec.model}.pt"), "log": str(data / f"{role}.log.json")}
    path = data / f"{role}.job.json"
    path.write_text(json.dumps(job))
    return path


def main(job_path: str) -> int:
    from filterbench.harness.nano.reftrain import train_reference

    job = json.loads(Path(job_path).read_text())
    data = Path(job["data"])
    images = np.load(data / "images.npy")
    with np.load(data / "labels.npz") as arrays:
        labels = {k[len("image_"):]: arrays[k] for k in arrays.files if k.startswith("image_")}
        text_labels = {k[len("text_"):]: arrays[k] for k in arrays.files if k.startswith("text_")}
    texts = json.loads((data / "texts.json").read_text())
    log = train_reference(job["role"], RefTraining(**job["spec"]), images, texts, labels, text_labels,
                          job["seed"], Path(job["out"]))
    Path(job["log"]).write_text(json.dumps(log))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
