"""Inline, local (forked and spawned) and Slurm-array executors give byte-identical artifacts."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest

from filterbench import get_sampler, get_scorer
from filterbench.harness.executor import (Deferred, ExecutorError, ExecutorSpec, FunctionTask, InlineExecutor,
                                          LocalExecutor, make_executor)
from filterbench.harness.pool import Pool
from filterbench.harness.slurm import SCRIPT, SlurmExecutor, element_count, element_slice
from filterbench.harness.stages.sample import run_sample
from filterbench.harness.stages.score import run_score
from filterbench.harness.store import Store

from filterbench.testing import artifact_bytes as output_bytes


def _score(tmp_path, pool, name, executor, **params):
    return run_score(Store(tmp_path), Pool(pool), get_scorer(name, **params), progress=False, executor=executor)


@pytest.mark.parametrize("scorer", ["clip_score", "negcliploss"])
def test_inline_forked_and_spawned_workers_write_the_same_bytes(tmp_path, shard_pool, scorer):
    inline = _score(tmp_path / "inline", shard_pool, scorer, InlineExecutor())
    forked = _score(tmp_path / "fork", shard_pool, scorer, LocalExecutor(2, start_method="fork"))
    spawned = _score(tmp_path / "spawn", shard_pool, scorer, LocalExecutor(2, start_method="spawn"))
    assert len(inline.manifest["parts"]) == 4
    assert inline.key == forked.key == spawned.key
    assert output_bytes(inline) == output_bytes(forked) == output_bytes(spawned)
    assert spawned.manifest["executed_by"] == {"executor": "local", "workers": 2}
    assert inline.manifest["stats"] == spawned.manifest["stats"]


def test_a_top_fraction_selection_is_the_same_on_every_executor(tmp_path, shard_pool):
    scores = _score(tmp_path, shard_pool, "clip_score", InlineExecutor())
    store = Store(tmp_path)
    sampler = get_sampler("top_fraction", fraction=0.3)
    one = run_sample(store, sampler, [scores], executor=InlineExecutor())
    again = run_sample(Store(tmp_path / "b"), sampler, [_score(tmp_path / "b", shard_pool, "clip_score",
                                                                LocalExecutor(2))], executor=LocalExecutor(2))
    assert one.key == again.key and output_bytes(one) == output_bytes(again)
    counts = np.load(one.path / "counts.npy")
    assert counts.sum() == int(0.3 * 480)


def test_cuda_free_processes_fork_and_unknown_executors_fail_in_one_line(tmp_path):
    assert LocalExecutor(2).method() == "fork"  # this process has not touched CUDA
    with pytest.raises(ExecutorError, match="unknown executor 'rey'.*did you mean 'ray'"):
        make_executor(ExecutorSpec("rey"))
    assert LocalExecutor(2).map(FunctionTask(lambda u: u * u), range(7), progress=False) == \
        [u * u for u in range(7)]


def test_element_slices_cover_every_unit_once():
    for units in (1, 5, 999, 1000, 1001, 4321):
        elements = element_count(units, 1000)
        covered = [u for e in range(elements) for u in element_slice(e, units, elements)]
        assert covered == list(range(units)) and elements <= 1000


def test_a_slurm_array_run_by_hand_gives_the_local_artifact(tmp_path, shard_pool):
    local = _score(tmp_path / "local", shard_pool, "negcliploss", LocalExecutor(1))
    slurm = SlurmExecutor(tmp_path / "slurm", max_array_size=3)
    with pytest.raises(Deferred, match=r"4 unit\(s\) in 3 array element\(s\).*sbatch") as deferred:
        _score(tmp_path / "array", shard_pool, "negcliploss", slurm)
    [plan] = (tmp_path / "slurm").iterdir()
    script = (plan / SCRIPT).read_text()
    assert "#SBATCH --array=0-2" in script and str(plan) in str(deferred.value)
    command = script.strip().splitlines()[-1]
    assert "run-unit" in command and command.endswith('"$SLURM_ARRAY_TASK_ID"')
    for element in range(3):  # what the array's elements would run, by hand, in sequence, as separate processes
        line = command.replace('"$SLURM_ARRAY_TASK_ID"', str(element))
        done = subprocess.run(line, shell=True, capture_output=True, text=True, cwd=tmp_path,
                              env={**os.environ, "SLURM_ARRAY_TASK_ID": str(element)})
        assert done.returncode == 0, done.stderr
    rerun = subprocess.run(line, shell=True, capture_output=True, text=True)  # a repeated element: a no-op
    assert "ran 0 unit(s)" in rerun.stdout
    finished = _score(tmp_path / "array", shard_pool, "negcliploss", slurm)  # the rerun collects and completes
    assert finished.key == local.key and output_bytes(finished) == output_bytes(local)
    assert finished.manifest["executed_by"] == {"executor": "slurm"}


def test_the_slurm_executor_from_the_command_line_defers_with_exit_0(tmp_path, shard_pool):
    from click.testing import CliRunner

    from filterbench.harness.cli import cli

    result = CliRunner().invoke(cli, ["score", "clip_score", "--pool", str(shard_pool), "--workdir",
                                      str(tmp_path), "--executor", "slurm", "--slurm-option=--partition=cpu"])
    assert result.exit_code == 0, result.output
    assert "slurm: 4 unit(s) in 4 array element(s)" in result.output
    [script] = (tmp_path / "slurm").glob(f"*/{SCRIPT}")
    assert "#SBATCH --partition=cpu" in script.read_text()
    bad = CliRunner().invoke(cli, ["score", "clip_score", "--pool", str(shard_pool), "--submit"])
    assert bad.exit_code == 2 and "--submit and --slurm-option with --executor slurm" in bad.output


def test_an_executor_from_a_plugin_runs_stages_by_name(tmp_path, shard_pool, plugin_site):
    from click.testing import CliRunner

    from filterbench.harness.cli import cli

    plugin_site("fb-backwards", "fb_backwards", """
        from filterbench.harness.executor import Executor
        from filterbench.harness.hookspecs import hookimpl

        class Backwards(Executor):
            '''Runs units last to first: the artifact must not notice.'''
            name = "backwards"

            def imap(self, task, units):
                task.setup()
                for i in reversed(range(len(units))):
                    yield i, task.run(units[i])

        @hookimpl
        def register_executors(register):
            register(Backwards)
    """)
    local = _score(tmp_path / "local", shard_pool, "clip_score", LocalExecutor(1))
    result = CliRunner().invoke(cli, ["score", "clip_score", "--pool", str(shard_pool), "--workdir",
                                      str(tmp_path / "backwards"), "--executor", "backwards"])
    assert result.exit_code == 0, result.output
    [scores] = Store(tmp_path / "backwards").iter_artifacts("scores")
    assert scores.manifest["executed_by"] == {"executor": "backwards"}
    assert output_bytes(scores) == output_bytes(local)
    wrong = CliRunner().invoke(cli, ["score", "clip_score", "--pool", str(shard_pool), "--executor", "backward"])
    assert wrong.exit_code == 2 and "unknown executor 'backward'" in wrong.output and "'backwards'" in wrong.output
    listed = CliRunner().invoke(cli, ["plugins"])
    assert "executor backwards" in listed.output
