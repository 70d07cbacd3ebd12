"""The FLYT training loop (flyt.md 2.2): the same for FLYT's head and M-FLYT's mixer, on one or W ranks.

Per step: score this rank's share of the upstream batch with the scoring model, gather the scores (global
softmax weights), compute the hypergradient d L_down / d scores (:mod:`bilevel`), pull it back into the scoring
model (SUM-reduced over ranks) and take an AdamW step; step the learned downstream temperature; advance the
reference model's moments and, with ``update_reference``, move the reference to theta+ (clamping its logit
scale to [2, ln 100], trap 11).

Everything a step depends on is in the checkpoint (scoring model and optimiser, reference parameters and
moments, downstream temperature and optimiser) or derived from (seed, step), so a fit resumed from its latest
checkpoint reproduces an uninterrupted one.  Checkpoints go to ``checkpoint_dir`` every ``checkpoint_every``
steps (written by rank 0 under a temporary name, then renamed); the final state to ``state_dir``.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from filterbench.harness.assets import load_model, resolve_labelled, resolve_model
from filterbench.harness.samples import LabelledSamples, PoolSamples
from filterbench.harness.seeding import derive_int_seed
from filterbench.plugins.flyt.adamw import AdamWConfig, AdamWState, decays, detach_state
from filterbench.plugins.flyt.bilevel import SCALE, Reference, StepConfig, hypergradient
from filterbench.plugins.flyt.data import Labelled, StepBatches
from filterbench.plugins.flyt.dist import Group
from filterbench.plugins.flyt.heads import GluHead, Mixer
from filterbench.plugins.flyt.loss import DOWNSTREAM_LOGIT_SCALE_INIT

LOGIT_SCALE_BOUNDS = (2.0, math.log(100.0))


@dataclass(frozen=True)
class FitSpec:
    """Everything a (possibly separate) training process needs; written as JSON for torchrun ranks."""

    kind: str                 # "flyt" (head over features) or "mflyt" (mixer over scores)
    pool_root: str
    inputs_path: str          # .npy (candidates, width): the scoring model's input per candidate row
    candidates_path: str      # .npy of pool rows, sorted
    reference_model: str
    reference_checkpoint: str | None
    downstream: str
    loss: str
    steps: int
    up_batch: int
    down_batch: int
    lr_reference: float
    lr_scoring: float
    warmup: int
    update_reference: bool
    weight_decay: float
    seed: int
    checkpoint_dir: str
    state_dir: str
    checkpoint_every: int
    device: str = "cpu"
    precision: str = "fp32"  # "fp64": every tensor of the fit in double precision (exactness checks)

    @property
    def dtype(self) -> torch.dtype:
        return torch.float64 if self.precision == "fp64" else torch.float32

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1, sort_keys=True))

    @classmethod
    def load(cls, path: Path) -> "FitSpec":
        return cls(**json.loads(Path(path).read_text()))


def cosine_lr(base: float, warmup: int, total: int, step: int) -> float:
    """open_clip's schedule: linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return base * (step + 1) / warmup
    span = max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / span)) * base


def scoring_model(kind: str, width: int, seed: int = 0) -> torch.nn.Module:
    """FLYT's head (``kind`` "flyt", ``width`` = 2 x embedding width) or M-FLYT's mixer ("mflyt", k inputs),
    initialised by PyTorch's default init under a seed derived from ``seed``."""
    torch.manual_seed(derive_int_seed(seed, "flyt", "init", kind))
    return GluHead(width // 2) if kind == "flyt" else Mixer(width)


def _optimizer(model: torch.nn.Module, lr: float, wd: float) -> torch.optim.Optimizer:
    named = list(model.named_parameters())
    groups = [{"params": [p for n, p in named if decays(n, p)], "weight_decay": wd},
              {"params": [p for n, p in named if not decays(n, p)], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), eps=1e-6)


class Fit:
    """The state of one fit on one rank and its training step."""

    def __init__(self, spec: FitSpec, group: Group):
        self.spec, self.group = spec, group
        ref = resolve_model(spec.reference_model, spec.reference_checkpoint, spec.pool_root)
        torch.manual_seed(derive_int_seed(spec.seed, "flyt", "reference init"))  # without a checkpoint
        model, preprocess, _, tokenizer = load_model(ref, spec.device)
        self.ref = Reference(model.to(spec.dtype))
        self.theta = self.ref.params()
        self.adam = AdamWState()
        inputs = np.load(spec.inputs_path, mmap_mode="r")
        self.head = scoring_model(spec.kind, inputs.shape[1], spec.seed).to(spec.device, spec.dtype)
        self.head_opt = _optimizer(self.head, spec.lr_scoring, spec.weight_decay)
        self.down_scale = torch.tensor(DOWNSTREAM_LOGIT_SCALE_INIT, device=spec.device, dtype=spec.dtype,
                                       requires_grad=True)
        self.down_opt = torch.optim.AdamW([self.down_scale], lr=spec.lr_reference, betas=(0.9, 0.98), eps=1e-6,
                                          weight_decay=0.0)
        labelled = resolve_labelled(spec.downstream, spec.pool_root)
        from filterbench.harness.pool import Pool

        self.batches = StepBatches(PoolSamples(Pool(spec.pool_root)), np.load(spec.candidates_path), inputs,
                                   Labelled(LabelledSamples(labelled.tars), labelled.classnames,
                                            labelled.templates),
                                   preprocess, tokenizer, spec.seed, spec.up_batch, spec.down_batch, spec.loss,
                                   group, spec.device, spec.dtype)
        self.step, self.history = 0, []

    # -- one step ----------------------------------------------------------------------------------------
    def train_step(self) -> dict:
        spec, k = self.spec, self.step
        lr_ref = cosine_lr(spec.lr_reference, spec.warmup, spec.steps, k) if spec.update_reference \
            else spec.lr_reference
        lr_head = cosine_lr(spec.lr_scoring, spec.warmup, spec.steps, k)
        inputs, up = self.batches.upstream(k)
        down = self.batches.downstream(k)
        scores = self.head(inputs)
        global_scores = self.group.gather(scores)
        result = hypergradient(self.ref, self.theta, self.adam, global_scores, up, down,
                               StepConfig(lr_ref, spec.loss, AdamWConfig(weight_decay=spec.weight_decay)),
                               self.down_scale, self.group)
        self._update_scoring(scores, result.dscores, lr_head)
        if result.down_scale_grad is not None:
            self._update_down_scale(result.down_scale_grad, lr_ref)
        self.adam = detach_state(result.inner.state)
        if spec.update_reference:
            self.theta = {n: p.detach() for n, p in result.inner.params.items()}
            self.theta[SCALE] = self.theta[SCALE].clamp(*LOGIT_SCALE_BOUNDS)
        self.step += 1
        weights = torch.softmax(global_scores.detach(), 0)
        return {"step": k, "up_loss": result.up_loss, "down_loss": result.down_loss, "lr_scoring": lr_head,
                "lr_reference": lr_ref, "weight_entropy": float(-(weights * weights.clamp_min(1e-30).log()).sum()),
                "reference_scale": float(self.theta[SCALE].detach().exp()),
                "down_scale": float(self.down_scale.detach().exp())}

    def _update_scoring(self, scores: torch.Tensor, dscores: torch.Tensor, lr: float) -> None:
        self.head_opt.zero_grad(set_to_none=False)
        (scores * dscores[self.group.share(len(dscores))]).sum().backward()
        self.group.sum_({n: p.grad for n, p in self.head.named_parameters()})
        for group in self.head_opt.param_groups:
            group["lr"] = lr
        self.head_opt.step()

    def _update_down_scale(self, grad: torch.Tensor, lr: float) -> None:
        self.down_opt.zero_grad(set_to_none=False)
        self.down_scale.grad = grad.detach().clone()
        self.down_opt.param_groups[0]["lr"] = lr
        self.down_opt.step()

    # -- checkpoints ---------------------------------------------------------------------------------------
    def state(self) -> dict:
        return {"step": self.step, "head": self.head.state_dict(), "head_opt": self.head_opt.state_dict(),
                "theta": self.theta, "adam": self.adam.as_dict(), "down_scale": self.down_scale.detach(),
                "down_opt": self.down_opt.state_dict(), "history": self.history}

    def load(self, data: dict) -> None:
        self.step, self.history = int(data["step"]), list(data["history"])
        self.head.load_state_dict(data["head"])
        self.head_opt.load_state_dict(data["head_opt"])
        self.theta = {k: v.to(self.spec.device) for k, v in data["theta"].items()}
        self.adam = AdamWState.from_dict(data["adam"])
        with torch.no_grad():
            self.down_scale.copy_(data["down_scale"])
        self.down_opt.load_state_dict(data["down_opt"])


def latest_checkpoint(folder: Path) -> Path | None:
    found = sorted(folder.glob("step-*.pt"))
    return found[-1] if found else None


def save_checkpoint(fit: Fit, folder: Path) -> None:
    path = folder / f"step-{fit.step:07d}.pt"
    tmp = folder / f".{path.name}.tmp-{os.getpid()}"
    torch.save(fit.state(), tmp)
    os.replace(tmp, path)
    for old in sorted(folder.glob("step-*.pt"))[:-1]:
        old.unlink()


def train(spec: FitSpec, group: Group) -> Fit:
    """Run (or resume) the fit to ``spec.steps`` steps; rank 0 writes checkpoints and the final state."""
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    fit = Fit(spec, group)
    checkpoints = Path(spec.checkpoint_dir)
    latest = latest_checkpoint(checkpoints)
    if latest is not None:
        fit.load(torch.load(latest, map_location=spec.device, weights_only=True))
    while fit.step < spec.steps:
        started = time.process_time()
        record = fit.train_step()
        record["cpu_s"] = time.process_time() - started
        fit.history.append(record)
        if group.rank == 0 and (fit.step % spec.checkpoint_every == 0 or fit.step == spec.steps):
            save_checkpoint(fit, checkpoints)
        group.barrier()
    if group.rank == 0:
        write_state(fit, Path(spec.state_dir))
    return fit


def write_state(fit: Fit, folder: Path) -> None:
    """The fitted scoring model (``scorer.pt``) and the training history (``history.jsonl``)."""
    torch.save(fit.head.state_dict(), folder / "scorer.pt")
    with open(folder / "history.jsonl", "w") as handle:
        for record in fit.history:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
    final = {"steps": fit.step, "reference_scale": float(fit.theta[SCALE].detach().exp()),
             "down_scale": float(fit.down_scale.detach().exp())}
    (folder / "final.json").write_text(json.dumps(final, indent=1, sort_keys=True))
