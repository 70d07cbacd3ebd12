"""Launching several processes: torchrun on one machine, a generated SLURM script on a cluster.

Both start ``python -m filterbench.harness.training.launcher LAUNCH.json`` once per process; open_clip_train
then reads the rank from torchrun's variables (``RANK``/``WORLD_SIZE``/``LOCAL_RANK``) or from SLURM's
(``SLURM_PROCID``/``SLURM_NTASKS``/``SLURM_LOCALID``) and picks ``gloo`` on CPU, ``nccl`` on GPUs.

- torchrun: ``python -m torch.distributed.run --standalone --nproc_per_node N -m -- <launcher> LAUNCH.json``;
  the ``--`` keeps torchrun from parsing the launcher's arguments (ecosystem trap 7).
- SLURM: one task per GPU (``srun --cpu_bind=v --accel-bind=gn``, as DataComp's ``slurm_train.sh``),
  ``MASTER_ADDR`` = first host of the allocation, ``--requeue`` (a requeued job resumes from the last
  checkpoint because the argv has ``--resume latest``), and a final step that re-runs ``filterbench train`` in
  the same work directory: it finds the finished training and completes the artifact (manifest, digests).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from filterbench.harness.training.plan import TrainError

LAUNCHER_MODULE = "filterbench.harness.training.launcher"


def training_env(threads: int | None = 1) -> dict[str, str]:
    """Variables every training process gets: one OMP thread (trap 5) and no network (offline hub, no wandb)."""
    env = {"HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def launcher_command(spec_path: Path) -> list[str]:
    return [sys.executable, "-m", LAUNCHER_MODULE, str(spec_path)]


def torchrun_command(spec_path: Path, nproc: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "--", LAUNCHER_MODULE, str(spec_path)]


def run_command(command: list[str], log_path: Path, threads: int | None = 1) -> None:
    """Run a launch command with the training environment; its output goes to ``log_path``.

    Raises:
        TrainError: when it exits non-zero (one line: the log's path and last line).
    """
    env = {**os.environ, **training_env(threads)}
    with open(log_path, "ab") as log:
        log.write(f"$ {shlex.join(command)}\n".encode())
        log.flush()
        code = run_in_group(command, env, log)
    if code != 0:
        tail = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()][-1:]
        raise TrainError(f"training exited with status {code}; see {log_path} (last line: "
                         f"{tail[0].strip() if tail else '-'})")


def run_in_group(command: list[str], env: dict[str, str], log) -> int:
    """Run ``command`` (torchrun, a launcher) with its output in ``log`` and return its exit status.

    No process it starts outlives this one: it runs in its own process group, which an exception while waiting
    (Ctrl-C, or SIGTERM/SIGHUP that the CLI turns into one) stops as a whole; and if this process dies outright
    (SIGKILL), Linux sends the group leader SIGTERM (``PR_SET_PDEATHSIG``), which torchrun forwards to its ranks.
    """
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                               preexec_fn=_term_with_parent)
    try:
        return process.wait()
    except BaseException:
        _stop_group(process)
        raise


def _term_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent dies (kept across exec; best effort off Linux)."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG (linux/prctl.h)
    except (OSError, AttributeError):
        pass


def _stop_group(process: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM the launcher's process group (torchrun forwards it to its ranks), then SIGKILL what is left."""
    import signal

    for signum in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace_s)
            return
        except subprocess.TimeoutExpired:
            continue


@dataclass
class SlurmOptions:
    """What the generated SLURM script asks for.

    Attributes:
        nodes: nodes of the job; ``tasks_per_node``: processes (GPUs) per node.
        gpus_per_task: GPUs bound to each task (0 on CPU clusters).
        cpus_per_task: CPU cores per task (dataloader workers + 1 is a good value).
        time: wall-clock limit (``HH:MM:SS``); partition/account: left out when None.
        extra: further ``#SBATCH`` lines, e.g. ``["--qos=high"]``.
    """

    nodes: int = 1
    tasks_per_node: int = 1
    gpus_per_task: int = 1
    cpus_per_task: int = 6
    time: str = "24:00:00"
    partition: str | None = None
    account: str | None = None
    extra: list[str] = field(default_factory=list)

    @property
    def world_size(self) -> int:
        return self.nodes * self.tasks_per_node


def slurm_script(spec_path: Path, job_name: str, log_dir: Path, finalize: list[str], options: SlurmOptions,
                 threads: int | None = None) -> str:
    """The text of an sbatch script that trains with one task per process and then finalizes the artifact."""
    if options.world_size < 1:
        raise TrainError("a SLURM job needs at least one task")
    sbatch = [f"--job-name={job_name}", f"--nodes={options.nodes}", f"--ntasks-per-node={options.tasks_per_node}",
              f"--cpus-per-task={options.cpus_per_task}", f"--time={options.time}",
              f"--output={log_dir}/slurm-%j.out", "--requeue"]
    if options.gpus_per_task:
        sbatch.append(f"--gpus-per-task={options.gpus_per_task}")
    sbatch += [f"--partition={options.partition}"] if options.partition else []
    sbatch += [f"--account={options.account}"] if options.account else []
    sbatch += list(options.extra)
    exports = {**training_env(threads), "MASTER_PORT": "${MASTER_PORT:-29500}"}
    bind = "--cpu_bind=v --accel-bind=gn" if options.gpus_per_task else "--cpu_bind=v"
    lines = ["#!/bin/bash", *(f"#SBATCH {s}" for s in sbatch), "",
             "# generated by filterbench: train with one task per process, then complete the train artifact",
             "set -euo pipefail",
             'export MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"',
             *(f"export {k}={v if k == 'MASTER_PORT' else shlex.quote(v)}" for k, v in exports.items()),
             f"cd {shlex.quote(os.getcwd())}",
             f"srun {bind} {shlex.join(launcher_command(spec_path))}",
             shlex.join(finalize), ""]
    return "\n".join(lines)
