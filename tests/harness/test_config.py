"""One run configuration, resolved once at the edge: the scale reaches the trainer resolved (never a name plus
raw overrides), one override syntax on every command, records outside the package by default."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from filterbench.harness.cli import cli


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


class _Stop(Exception):
    """Raised by the stand-in trainer once it has seen its arguments."""


def test_the_scale_is_resolved_once_and_reaches_the_trainer_as_is(tiny_pool, workdir, monkeypatch):
    from filterbench.harness.scales import ResolvedScale, Scale
    from filterbench.harness.stages import train

    calls, seen = [], {}
    original = Scale.with_overrides

    def counting(self, **overrides):
        calls.append(overrides)
        return original(self, **overrides)

    def trainer(store, selection, scale, **kwargs):
        seen["scale"] = scale
        raise _Stop

    monkeypatch.setattr(Scale, "with_overrides", counting)
    monkeypatch.setattr(train, "run_train", trainer)
    result = _invoke("run", "no_filter", "--scale", "nano-xs", "--pool", tiny_pool, "-o", "samples_seen=640",
                     "--until", "train")
    assert isinstance(result.exception, _Stop), result.output
    scale = seen["scale"]
    assert isinstance(scale, ResolvedScale) and scale.row.samples_seen == 640
    assert scale.official is False and dict(scale.overrides) == {"samples_seen": 640}
    assert calls == [{"samples_seen": 640}]


def test_the_configuration_is_frozen_and_records_default_to_the_workdir(tiny_pool, tmp_path):
    import filterbench
    from filterbench.harness.config import resolve_run_config

    config = resolve_run_config(workdir=tmp_path, scale="nano-xs", pool=tiny_pool, until="sample", seeds=2)
    assert config.records_dir == tmp_path / "records" and config.seeds == (0, 1)
    package = Path(filterbench.__file__).resolve().parent
    assert package not in config.records_dir.resolve().parents
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.until = "eval"
    with pytest.raises(TypeError):
        config.scale.overrides["lr"] = 1.0  # read-only: what the trainer trains is what the record reports


def test_one_override_syntax_on_every_command(tiny_pool, workdir):
    scored = _invoke("score", "clip_score", "--pool", tiny_pool)
    scores = scored.output.strip().splitlines()[-1]
    new = _invoke("sample", "soft_cap", "--scores", scores, "--scale", "nano-xs", "-o", "samples_seen=640")
    old = _invoke("sample", "soft_cap", "--scores", scores, "--scale", "nano-xs", "--samples-seen", "640")
    assert new.exit_code == 0 and old.exit_code == 0, new.output + old.output
    assert new.output.strip().splitlines()[-1] == old.output.strip().splitlines()[-1]  # the same artifact
    assert "warning: --samples-seen is deprecated; use -o samples_seen=N (with --scale)" in old.output
    assert "deprecated" not in new.output
    unscaled = _invoke("sample", "soft_cap", "--scores", scores, "-o", "samples_seen=640")
    assert unscaled.exit_code == 2
    assert unscaled.output.strip() == "error: -o samples_seen overrides a scale: give --scale S too"


@pytest.mark.parametrize("args, message", [
    (["--seeds", "0"], "Invalid value for '--seeds': 0 is not in the range x>=1"),
    (["--evalsets", "/no/such/evalsets"], "evalsets: /no/such/evalsets is not a folder"),
    (["-o", "no_such_knob=1"], "scale 'nano-xs': unknown setting(s) ['no_such_knob']"),
])
def test_bad_configurations_fail_before_any_work_in_one_line(tiny_pool, workdir, args, message):
    result = _invoke("run", "no_filter", "--scale", "nano-xs", "--pool", tiny_pool, *args)
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert message in result.output
    assert not (workdir / "scores").exists()


def test_eval_sets_alone_suffice_where_the_scale_has_no_default_world(tmp_path):
    """`eval TRAIN --evalsets DIR` for a model trained at `small`: DataComp's task list, no world to open."""
    from filterbench.harness.config import ConfigError, resolve_run_config
    from filterbench.harness.evaluation.api import load_tasklist, write_classification_evalset

    evalsets = tmp_path / "evalsets"
    for task in load_tasklist("datacomp_v1").tasks:
        write_classification_evalset(evalsets / task.folder, [np.zeros((8, 8, 3), np.uint8)] * 2, [0, 1],
                                     ["a", "b"], ["a {c}."], shard_size=2)
    config = resolve_run_config(workdir=tmp_path, scale="small", evalsets=evalsets, stages=("eval",))
    assert config.evalsets == evalsets and config.tasklist is None and config.world.pool is None
    with pytest.raises(ConfigError, match="scale 'small' has no default world"):
        resolve_run_config(workdir=tmp_path, scale="small", stages=("eval",))
