"""The fit stage of ``flyt`` and ``m_flyt``: prepare the scoring model's inputs, train (in process or under
torchrun), write the fitted state and the numbers the manifest records.

State written to ``ctx.state_dir``: ``scorer.pt`` (the scoring model's state dict), ``scorer.json`` (kind,
input width, M-FLYT's input columns with their pool mean and std, or the released checkpoint's name),
``history.jsonl`` (per step: upstream and downstream losses, learning rates, weight entropy, temperatures,
CPU seconds) and ``final.json``.  Scratch (candidate rows, input matrix, checkpoints, torchrun log) lives in
``ctx.checkpoint_dir``, so a killed fit resumes from its latest checkpoint.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

from filterbench.harness.contract import StageContext
from filterbench.harness.errors import PluginError
from filterbench.harness.training.distributed import run_in_group

WORKER_MODULE = "filterbench.plugins.flyt.worker"


def run(scorer, pool, ctx: StageContext) -> None:
    import torch

    kind = "flyt" if scorer.name == "flyt" else "mflyt"
    meta = {"kind": kind, **_standardisation(scorer, ctx)}
    if scorer.params.released:
        model = _released(scorer, meta)
        torch.save(model.state_dict(), ctx.state_dir / "scorer.pt")
        _write_meta(ctx, {**meta, "width": _width(scorer, pool, meta), "released": Path(scorer.params.released).name})
        return
    spec = _prepare(scorer, pool, ctx, kind, meta)
    if scorer.params.processes > 1:
        launch_torchrun(spec, scorer.params.processes, ctx.checkpoint_dir)
    else:
        from filterbench.plugins.flyt.dist import SINGLE
        from filterbench.plugins.flyt.trainer import train

        train(spec, SINGLE)
    width = int(np.load(spec.inputs_path, mmap_mode="r").shape[1])
    _write_meta(ctx, {**meta, "width": width})
    _record_stats(ctx, meta)


def _prepare(scorer, pool, ctx: StageContext, kind: str, meta: dict):
    from filterbench.harness.samples import PoolSamples
    from filterbench.plugins.flyt.trainer import FitSpec

    p, work = scorer.params, ctx.checkpoint_dir
    usable = PoolSamples(pool).available
    if kind == "mflyt":  # rows with a missing input (NaN from an image scorer) cannot be mixed
        usable &= np.all([np.isfinite(ctx.scores.column(c)) for c in meta["columns"]], axis=0)
    rows = np.flatnonzero(usable)
    if p.fit_rows is not None and p.fit_rows < len(rows):
        rows = np.sort(ctx.rng.choice(rows, size=p.fit_rows, replace=False))
    if len(rows) < 2:
        raise PluginError(f"scorer {scorer.name!r}: fewer than 2 pool rows have an image and a caption")
    np.save(work / "candidates.npy", rows)
    inputs = _features(scorer, pool, rows) if kind == "flyt" else _scores(scorer, ctx, rows, meta)
    np.save(work / "inputs.npy", inputs)
    return FitSpec(kind=kind, pool_root=str(pool.root), inputs_path=str(work / "inputs.npy"),
                   candidates_path=str(work / "candidates.npy"), reference_model=p.reference_model,
                   reference_checkpoint=p.reference_checkpoint, downstream=p.downstream, loss=p.loss,
                   steps=p.steps, up_batch=p.up_batch, down_batch=p.down_batch, lr_reference=p.lr_reference,
                   lr_scoring=p.lr_scoring, warmup=p.warmup, update_reference=p.update_reference,
                   weight_decay=p.weight_decay, seed=ctx.seed, checkpoint_dir=str(work),
                   state_dir=str(ctx.state_dir), checkpoint_every=p.checkpoint_every, device=p.device,
                   precision=p.precision)


def _features(scorer, pool, rows: np.ndarray) -> np.ndarray:
    """[image, text] stored features of the candidate rows (float32, rows in the given order)."""
    f = scorer.params.features
    parts = []
    for shard in pool.shards:
        mine = rows[(rows >= shard.offset) & (rows < shard.offset + shard.rows)] - shard.offset
        if mine.size:
            arrays = pool.read_features(shard, (f"{f}_img", f"{f}_txt"))
            parts.append(np.concatenate([arrays[f"{f}_img"][mine], arrays[f"{f}_txt"][mine]], axis=1))
    return np.concatenate(parts).astype(np.float32)


def _standardisation(scorer, ctx: StageContext) -> dict:
    """M-FLYT: each input column's pool mean and std (float64); FLYT: nothing."""
    if scorer.name != "m_flyt":
        return {}
    columns = scorer.input_columns()
    mean, std = [], []
    for name in columns:
        values = ctx.scores.column(name).astype(np.float64)
        values = values[np.isfinite(values)]  # image scorers leave rows without an image NaN
        mean.append(float(values.mean()) if values.size else 0.0)
        std.append(float(values.std()) if values.size else 0.0)
        if not std[-1] > 0:
            raise PluginError(f"scorer 'm_flyt': input column {name} is constant over the pool; it cannot be "
                              "standardised (drop it from the inputs)")
    return {"columns": columns, "mean": mean, "std": std}


def _scores(scorer, ctx: StageContext, rows: np.ndarray, meta: dict) -> np.ndarray:
    raw = np.stack([ctx.scores.column(c)[rows] for c in meta["columns"]], axis=1).astype(np.float64)
    return ((raw - np.asarray(meta["mean"])) / np.asarray(meta["std"])).astype(np.float32)


def _released(scorer, meta: dict):
    from filterbench.plugins.flyt.heads import load_released_head, load_released_mixer
    from filterbench.plugins.flyt.scorers import check_released

    path = check_released(scorer.params.released)
    if meta["kind"] == "mflyt":
        return load_released_mixer(path, len(meta["columns"]))
    return load_released_head(path, _embed_dim(path))


def _embed_dim(path: Path) -> int:
    from filterbench.plugins._cliptrain import read_state_dict

    weight = read_state_dict(path).get("glu_model.layers.0.w1.weight")
    if weight is None:
        raise PluginError(f"{path}: no glu_model.layers.0.w1.weight (not a FLYT scoring checkpoint)")
    return int(weight.shape[1]) // 2


def _width(scorer, pool, meta: dict) -> int:
    if meta["kind"] == "mflyt":
        return len(meta["columns"])
    return 2 * _embed_dim(Path(scorer.params.released).expanduser())


def _write_meta(ctx: StageContext, meta: dict) -> None:
    (ctx.state_dir / "scorer.json").write_text(json.dumps(meta, indent=1, sort_keys=True))


def _record_stats(ctx: StageContext, meta: dict) -> None:
    history = [json.loads(line) for line in (ctx.state_dir / "history.jsonl").read_text().splitlines()]
    head = history[:max(1, len(history) // 10)]
    tail = history[-max(1, len(history) // 10):]
    ctx.stat("steps", len(history))
    ctx.stat("cpu_s_per_step", float(np.mean([h["cpu_s"] for h in history])))
    for name in ("down_loss", "up_loss", "weight_entropy"):
        ctx.stat(f"{name}_first", float(np.mean([h[name] for h in head])))
        ctx.stat(f"{name}_last", float(np.mean([h[name] for h in tail])))
    final = json.loads((ctx.state_dir / "final.json").read_text())
    ctx.stat("reference_scale", final["reference_scale"])
    ctx.stat("down_scale", final["down_scale"])
    if meta["kind"] == "mflyt":
        import torch

        weights = torch.load(ctx.state_dir / "scorer.pt", weights_only=True)["layers.0.weight"].reshape(-1)
        for column, weight in zip(meta["columns"], weights.tolist()):
            ctx.stat(f"weight:{column}", weight)


def launch_torchrun(spec, processes: int, work: Path) -> None:
    """Run the fit on ``processes`` ranks with torchrun (one machine); its output goes to ``torchrun.log``."""
    spec_path = work / "fit_spec.json"
    spec.save(spec_path)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "--", WORKER_MODULE, str(spec_path)]  # "--": torchrun must not parse our args (trap 7)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "HF_HUB_OFFLINE": "1"}
    log_path = work / "torchrun.log"
    with open(log_path, "ab") as log:
        code = run_in_group(command, env, log)  # no rank outlives an interrupted or killed fit
    if code != 0:
        tail = " | ".join(log_path.read_text(errors="replace").splitlines()[-5:])
        raise PluginError(f"FLYT fit under torchrun exited with status {code} (see {log_path}): {tail}")
