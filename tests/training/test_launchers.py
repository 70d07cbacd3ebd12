"""torchrun with 2 CPU processes (gloo), the generated SLURM script (run as a one-task job), and the CLI."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from filterbench.harness.scales import get_scale, resolve_scale
from filterbench.harness.stages.train import run_train
from filterbench.harness.training.feed import fed_counts


def state_shapes(path):
    state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    return {k.removeprefix("module."): tuple(v.shape) for k, v in state.items()}


def test_two_gloo_processes_give_the_same_result_shape(train_store, selections, pool_uids, tiny):
    selection = selections["multiset"]
    single = run_train(train_store, selection, resolve_scale("nano-xs", tiny), count_fed=True)
    double = run_train(train_store, selection, resolve_scale("nano-xs", tiny), seed=2, nproc=2, launcher="torchrun",
                       count_fed=True)
    assert double.manifest["world_size"] == 2 and double.manifest["launcher"] == "torchrun"
    assert "--batch-size" in double.manifest["argv"]
    assert double.manifest["argv"][double.manifest["argv"].index("--batch-size") + 1] == "16"
    assert sorted(p.name for p in (double.path / "fed").glob("rank1-*")) == [f"rank1-epoch{e:03d}.uids"
                                                                            for e in range(5)]
    fed, strangers = fed_counts(double.path / "fed", pool_uids)
    assert strangers == 0
    assert np.array_equal(fed.sum(axis=0), np.load(selection.path / "counts.npy"))
    assert state_shapes(double.path / "checkpoints/epoch_5.pt") == \
        state_shapes(single.path / "checkpoints/epoch_5.pt")


def test_slurm_script_trains_and_finalizes(train_store, selections, tiny, tmp_path):
    from filterbench.harness.cli.train_cmds import train

    sets = [arg for knob, value in tiny.items() for arg in ("--set", f"{knob}={value}")]
    args = [selections["schedule"].key, "--scale", "nano-xs", "--seed", "3", "--launcher", "slurm",
            "--gpus-per-task", "0", "--workdir", str(train_store.root), *sets]
    result = CliRunner().invoke(train, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    script = result.output.strip().splitlines()[-1]
    text = Path(script).read_text()
    assert "#SBATCH --ntasks-per-node=1" in text and "#SBATCH --requeue" in text
    assert "srun --cpu_bind=v " in text and "-m filterbench.harness.training.launcher" in text
    # one task on a CPU scale: the scale's thread count, as the in-process launcher uses
    assert "--gpus-per-task" not in text and f"export OMP_NUM_THREADS={get_scale('nano-xs').cpu_threads}" in text
    assert subprocess.run(["bash", "-n", script], check=False).returncode == 0
    # run the job's two steps as SLURM would on one node with one task, without SLURM
    srun = next(line for line in text.splitlines() if line.startswith("srun "))
    finalize = text.strip().splitlines()[-1]
    env = {**os.environ, "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NTASKS": "1", "OMP_NUM_THREADS": "1"}
    subprocess.run(srun.split(" ", 2)[2], shell=True, check=True, env=env, capture_output=True)
    done = subprocess.run(finalize, shell=True, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    artifact_dir = done.stdout.strip().splitlines()[-1]
    manifest = train_store.find(artifact_dir).manifest
    assert manifest["launcher"] == "slurm" and manifest["seed"] == 3
    assert manifest["throughput"]["samples_fed"] == 640


def test_cli_prints_the_artifact_folder_last(train_store, selections, tiny):
    from filterbench.harness.cli.train_cmds import train

    sets = [arg for knob, value in tiny.items() for arg in ("--set", f"{knob}={value}")]
    args = [selections["subset"].key[:8], "--scale", "nano-xs", "--seed", "5", "--workdir", str(train_store.root),
            *sets]
    result = CliRunner().invoke(train, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    last = result.output.strip().splitlines()[-1]
    assert train_store.find(last).manifest["mode"] == "subset"
    assert "unofficial" in result.output


@pytest.mark.parametrize("args, message", [
    (["--launcher", "inprocess", "--nproc", "2"], "runs one process"),
    (["--nproc", "2", "--set", "batch_size=33"], "not divisible by 2 processes"),
])
def test_cli_errors_are_one_line(train_store, selections, args, message, tiny):
    from filterbench.harness.cli.train_cmds import train

    sets = [arg for knob, value in tiny.items() for arg in ("--set", f"{knob}={value}")]
    result = CliRunner().invoke(train, [selections["subset"].key, "--scale", "nano-xs", "--workdir",
                                        str(train_store.root), *sets, *args])
    assert result.exit_code == 2 and message in result.output


SPAWNER = """
import subprocess, sys, time
children = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"]) for _ in range(2)]
open(sys.argv[1], "w").write(" ".join(str(c.pid) for c in children))
time.sleep(120)
"""


def test_an_interrupted_launch_stops_the_launcher_and_every_process_it_started(tmp_path):
    """Issue 19.9: the ranks torchrun starts must not outlive an interrupted train stage (they are torchrun's
    children, so killing torchrun alone would orphan them)."""
    import signal
    import sys
    import time

    from filterbench.harness.training.distributed import run_command

    pids = tmp_path / "pids"

    def interrupt(signum, frame):
        raise KeyboardInterrupt  # what Ctrl-C or the CLI's SIGTERM handler raises in the main thread

    def alarm_once_started(signum, frame):
        if not pids.exists() or not pids.read_text().strip():
            return signal.setitimer(signal.ITIMER_REAL, 0.2)  # not yet: look again shortly
        interrupt(signum, frame)

    previous = signal.signal(signal.SIGALRM, alarm_once_started)
    signal.setitimer(signal.ITIMER_REAL, 0.2)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_command([sys.executable, "-c", SPAWNER, str(pids)], tmp_path / "log.txt")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    children = [int(pid) for pid in pids.read_text().split()]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not all(_gone(pid) for pid in children):
        time.sleep(0.1)
    alive = [pid for pid in children if not _gone(pid)]
    for pid in alive:  # never leave them running, even when the test fails
        os.kill(pid, signal.SIGKILL)
    assert not alive, "a process the launcher started outlived the interrupted stage"


TORCHRUN_LIKE = """
import signal, subprocess, sys, time
children = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"]) for _ in range(2)]
def forward(signum, frame):  # what torchrun does with SIGTERM: stop its ranks, then exit
    for child in children:
        child.terminate()
    sys.exit(143)
signal.signal(signal.SIGTERM, forward)
open(sys.argv[1], "w").write(" ".join(str(c.pid) for c in children))
time.sleep(120)
"""

HOLDER = """
import sys
from filterbench.harness.training.distributed import run_in_group
with open(sys.argv[3], "ab") as log:
    run_in_group([sys.executable, "-c", sys.argv[1], sys.argv[2]], {}, log)
"""


def test_a_launch_whose_harness_process_is_killed_outright_stops_too(tmp_path):
    """SIGKILL runs no cleanup code in the harness: the launched group leader must learn of it from Linux
    (PR_SET_PDEATHSIG) and stop its ranks itself, as torchrun does on SIGTERM."""
    import signal
    import subprocess
    import sys
    import time

    pids = tmp_path / "pids"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, TORCHRUN_LIKE, str(pids), str(tmp_path / "log")])
    deadline = time.monotonic() + 60
    while not (pids.exists() and pids.read_text().strip()):
        assert holder.poll() is None and time.monotonic() < deadline, "the launch never started"
        time.sleep(0.1)
    holder.kill()
    holder.wait()
    children = [int(pid) for pid in pids.read_text().split()]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not all(_gone(pid) for pid in children):
        time.sleep(0.1)
    alive = [pid for pid in children if not _gone(pid)]
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive, "a rank outlived the killed harness process"


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True
