"""The stage commands at the official `nano-xs` scale on the xs nano world: `train SELECTION --scale nano-xs`
then `eval TRAIN_KEY` give an open_clip checkpoint, `eval_results.jsonl` and a summary (issue #4's done-when),
and the model they train has learned something on the nano suite.

The fabricated-pool tests elsewhere shrink the budget with overrides; this one runs the scale as published
(16,000 samples seen, about two minutes of training on two cores)."""

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from filterbench.harness.cli import cli


def _last_line(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


def test_train_then_eval_at_nano_xs_on_the_xs_world(xs_world, workdir):
    import open_clip

    from filterbench.harness.nano import evalsuite
    from filterbench.harness.nano.world import get_config
    from filterbench.harness.scales import get_scale

    scores = _last_line("score", "clip_score", "--pool", str(xs_world.pool_dir), "-p", "model=l14")
    selection = _last_line("sample", "top_fraction", "--scores", scores, "-p", "fraction=0.3")
    train_dir = Path(_last_line("train", selection, "--scale", "nano-xs"))

    train = json.loads((train_dir / "manifest.json").read_text())
    budget = get_scale("nano-xs").samples_seen
    assert train["official"] is True and train["overrides"] == {}
    assert train["throughput"]["samples_fed"] == budget
    xs_world.load_model("l14")  # registers the nano model configs with open_clip
    model, _, _ = open_clip.create_model_and_transforms(train["model"],
                                                        pretrained=str(train_dir / "checkpoints/epoch_latest.pt"))
    assert model.logit_scale.item() > 0

    eval_dir = Path(_last_line("eval", train["key"], "--evalsets", str(xs_world.evalsets_dir),
                               "--tasklist", str(xs_world.tasklist)))
    rows = [json.loads(line) for line in (eval_dir / "eval_results.jsonl").read_text().splitlines()]
    summary = json.loads((eval_dir / "summary.json").read_text())
    assert {row["key"] for row in rows} == {t.key for t in evalsuite.TASKS}
    assert summary["missing_tasks"] == []

    # learned, not random: the mean over tasks clears the mean chance level, and colour (the first thing a
    # tiny CLIP picks up, docs/nano.md) is far above its chance level
    cfg = get_config("xs")
    chance = {t.key: evalsuite.chance(t) if not t.retrieval else 1.0 / cfg.retrieval_size for t in evalsuite.TASKS}
    assert summary["scores"]["Average"] > float(np.mean(list(chance.values()))) + 0.05, summary["scores"]
    assert summary["tasks"]["nano/colour"]["main_metric"] > 2 * chance["nano/colour"], summary["tasks"]
