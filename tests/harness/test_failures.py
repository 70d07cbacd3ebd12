"""Failing in one clear line: misspelt recipes, broken plugins, plugin exceptions, bad numbers, interruptions.

Each test is the measured defect of issue 19 it is named after; each fails on the code before the fix.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from filterbench.harness.cli import cli

EXPLODING = '''
import os
import time

import numpy as np
import filterbench
from filterbench import Needs, Scorer


class Explodes(Scorer):
    """Divides by zero on the pool's second shard (or sleeps there, writing its pid, when SLOW is set)."""

    name = "explodes"
    needs = Needs(metadata=("text",))

    def score_batch(self, batch, ctx):
        if os.environ.get("FB_TEST_SLOW"):
            with open(os.path.join(os.environ["FB_TEST_SLOW"], f"{os.getpid()}.pid"), "w") as handle:
                handle.write(batch.shard)
            time.sleep(600)
        if batch.shard == os.environ.get("FB_TEST_BAD_SHARD"):
            return 1 / 0
        return np.zeros(len(batch), dtype=np.float32)


@filterbench.hookimpl
def register_scorers(register):
    register(Explodes)
'''


@pytest.fixture()
def run(workdir):
    runner = CliRunner()

    def invoke(*args):
        result = runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)
        return result.exit_code, result.output.strip().splitlines()

    return invoke


def _one_error_line(lines: list[str]) -> str:
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], lines
    assert not any("Traceback" in line for line in lines), lines
    return errors[0]


# -- item 2: unknown keys in a recipe's plugin entries, sampler columns nobody outputs ---------------------------
RECIPE = """\
version: 1
name: misspelt
scorers:
  - {name: clip_score, %s: {model: l14}}
sampler: {name: top_fraction, params: {fraction: 0.3, column: %s}}
"""


@pytest.mark.parametrize("entry_key,column,message", [
    ("parms", "clip_score.score", r"unknown key in scorers\[0\] 'parms'; did you mean 'params'\?"),
    ("params", "clip_score.scroe", r"no score column 'clip_score.scroe'; did you mean 'clip_score.score'\?"),
])
def test_a_misspelt_recipe_fails_in_validate_and_run(run, tmp_path, tiny_pool, entry_key, column, message):
    import re

    recipe = tmp_path / "misspelt.yaml"
    recipe.write_text(RECIPE % (entry_key, column))
    for args in (("validate", recipe), ("run", recipe, "--pool", tiny_pool, "--until", "sample")):
        code, lines = run(*args)
        assert code == 2 and re.search(message, _one_error_line(lines)), (args, lines)


def test_a_sampler_param_misspelt_on_the_command_line_suggests_the_name(run, tiny_pool):
    code, lines = run("sample", "top_fraction", "--pool", tiny_pool, "-p", "fracton=0.3")
    assert code == 2 and "fracton: unknown parameter; did you mean 'fraction'?" in _one_error_line(lines)


# -- item 3: a plugin whose registration hook raises -------------------------------------------------------------
RAISING_HOOKS = '''
import filterbench


@filterbench.hookimpl
def register_scorers(register):
    raise RuntimeError("this plugin's author made a mistake")


@filterbench.hookimpl
def register_commands(cli):
    raise RuntimeError("and another one")


@filterbench.hookimpl
def register_model_configs(register):
    raise ValueError("and a third")
'''


def test_a_plugin_whose_registration_hook_raises_is_listed_as_failed_and_skipped(run, plugin_site, tiny_pool):
    plugin_site("fb-raising", "fb_raising", RAISING_HOOKS)
    from filterbench.harness.cli import _attach_plugin_commands

    _attach_plugin_commands()  # what main() does before any command: must not raise
    code, lines = run("plugins")
    assert code == 0
    row = next(line for line in lines if line.startswith("fb_raising"))
    assert "FAILED: " in row and "RuntimeError" in row, row
    assert run("ls", "scorers")[0] == 0
    code, lines = run("score", "clip_score", "--pool", tiny_pool)
    assert code == 0 and lines[-1].endswith(tuple("0123456789abcdef")), lines


def test_strict_plugins_make_a_raising_hook_fatal(plugin_site, monkeypatch):
    from filterbench.harness.errors import PluginError
    from filterbench.harness.manager import Plugins

    plugin_site("fb-raising", "fb_raising", RAISING_HOOKS)
    monkeypatch.setenv("FILTERBENCH_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match=r"plugin 'fb_raising' .*raised in register_scorers: register_scorers "
                                          r"raised RuntimeError"):
        Plugins().scorers


# -- item 4: an exception inside a plugin's score_batch ------------------------------------------------------------
@pytest.mark.parametrize("workers", [1, 2])
def test_a_plugin_exception_is_one_line_naming_plugin_shard_and_exception(run, plugin_site, tiny_pool, monkeypatch,
                                                                          workers):
    from filterbench.harness.pool import Pool

    plugin_site("fb-explodes", "fb_explodes", EXPLODING)
    bad = Pool(tiny_pool).shards[1].stem
    monkeypatch.setenv("FB_TEST_BAD_SHARD", bad)
    code, lines = run("score", "explodes", "--pool", tiny_pool, "--workers", workers)
    assert code == 2
    assert _one_error_line(lines) == (f"error: scorer 'explodes' failed on shard {bad}: ZeroDivisionError: "
                                      "division by zero")
    with pytest.raises(Exception) as raised:  # --debug: the traceback, down to the plugin's line
        CliRunner().invoke(cli, ["--debug", "score", "explodes", "--pool", str(tiny_pool)], catch_exceptions=False)
    assert isinstance(raised.value.__cause__, ZeroDivisionError)


# -- item 10: NaN params, non-positive counts, YAML errors -------------------------------------------------------
def test_a_nan_param_is_refused(run, tiny_pool):
    code, lines = run("sample", "threshold", "--pool", tiny_pool, "-p", "threshold=.nan")
    assert code == 2 and "threshold is NaN" in _one_error_line(lines)


def test_a_threshold_above_every_score_is_an_error_not_an_empty_selection(run, tiny_pool):
    code, lines = run("score", "clip_score", "--pool", tiny_pool)
    code, lines = run("sample", "threshold", "--scores", lines[-1], "-p", "threshold=5")
    assert code == 2 and "selected no uid of 600" in _one_error_line(lines)


@pytest.mark.parametrize("args", [("sample", "all", "--pool", "P", "--samples-seen", "-5"),
                                  ("run", "no_filter", "--seeds", "0"),
                                  ("score", "clip_score", "--pool", "P", "--workers", "0"),
                                  ("score", "clip_score", "--pool", "P", "--seed", "-1"),
                                  ("score", "clip_score", "--pool", "P", "-p", "model=[l14")])
def test_meaningless_numbers_and_malformed_values_are_refused_in_one_line(run, tiny_pool, args):
    code, lines = run(*[tiny_pool if a == "P" else a for a in args])
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines


def test_every_integer_option_declares_its_range():
    """The mechanism behind the previous test: no command takes a bare ``int`` (which admits 0 and -5)."""
    import click

    def commands(group, path=()):
        for name, command in group.commands.items():
            yield (*path, name), command
            if isinstance(command, click.Group):
                yield from commands(command, (*path, name))

    bare = [f"{' '.join(path)} {param.opts[0]}" for path, command in commands(cli) for param in command.params
            if isinstance(param, click.Option) and param.type is click.INT]
    assert not bare, f"integer options without a range (use common.COUNT or common.SEED): {bare}"


def test_a_yaml_syntax_error_is_one_line_with_its_position(run, tmp_path):
    recipe = tmp_path / "broken.yaml"
    recipe.write_text("version: 1\nname: broken\nsampler: {name: all\n")
    code, lines = run("validate", recipe)
    assert code == 2 and len(lines) == 1, lines
    assert f"{recipe}: not valid YAML: line 4, column 1:" in lines[0], lines


# -- item 9: workers die with their parent; interruptions are one line -------------------------------------------
def _start_slow_score(plugin_site, tiny_pool, tmp_path) -> tuple[subprocess.Popen, Path]:
    """`filterbench score explodes --workers 2` in its own session, both workers asleep in score_batch."""
    site = plugin_site("fb-explodes", "fb_explodes", EXPLODING)
    pids = tmp_path / "pids"
    pids.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
           "FB_TEST_SLOW": str(pids), "FILTERBENCH_HOME": str(tmp_path / "work")}
    process = subprocess.Popen([sys.executable, "-c", "from filterbench.harness.cli import main; main()", "score",
                                "explodes", "--pool", str(tiny_pool), "--workers", "2"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while len(list(pids.glob("*.pid"))) < 2:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the workers never started"
        time.sleep(0.1)
    return process, pids


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:  # the test failed before the command ended: do not leave it running
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")  # a zombie has no memory left; its reaper is whoever adopted it


def _workers_gone(pids: Path, within_s: float = 10.0) -> bool:
    workers = [int(p.stem) for p in pids.glob("*.pid")]
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if all(_gone(pid) for pid in workers):
            return True
        time.sleep(0.1)
    for pid in workers:  # never leave them running, even when the test fails
        if not _gone(pid):
            os.kill(pid, signal.SIGKILL)
    return False


@pytest.mark.parametrize("how,exit_code", [("SIGTERM", 143), ("SIGHUP", 129), ("SIGINT", 130)])
def test_an_interrupted_stage_stops_its_workers_and_says_what_was_kept(plugin_site, tiny_pool, tmp_path, how,
                                                                      exit_code):
    """Issue 19.9: SIGTERM while workers ran left them running as orphans; Ctrl-C printed tracebacks."""
    process, pids = _start_slow_score(plugin_site, tiny_pool, tmp_path)
    try:
        if how == "SIGINT":
            os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground process group
        else:
            process.send_signal(getattr(signal, how))  # `kill PID`, or the terminal closing: the parent only
        _, stderr = process.communicate(timeout=30)
    finally:
        _stop(process)
        assert _workers_gone(pids), "a worker outlived its parent"
    lines = [line for line in stderr.splitlines() if line.strip() and "unit/s]" not in line]  # (progress bar)
    assert process.returncode == exit_code, stderr
    assert len(lines) == 1 and lines[0].startswith(f"interrupted ({how}): kept 0 finished unit(s) of "
                                                   "scores/explodes-"), stderr
    assert lines[0].endswith("; rerun the same command to resume") and ".partial-explodes-" in lines[0]


def test_workers_die_with_a_parent_killed_outright(plugin_site, tiny_pool, tmp_path):
    process, pids = _start_slow_score(plugin_site, tiny_pool, tmp_path)
    process.kill()  # SIGKILL: no handler, no cleanup code runs in the parent
    try:
        process.communicate(timeout=30)
    finally:
        _stop(process)
        assert _workers_gone(pids), "a worker outlived its parent (no PR_SET_PDEATHSIG?)"
