"""Training an open_clip model inside a scorer's fit (DFN's filtering network, HYPE's hyperbolic CLIP).

open_clip's own pieces do the work: the model (``harness.assets.load_model``: architecture, checkpoint,
train/eval preprocessing, tokenizer), AdamW with open_clip_train's weight-decay rule (none on gains, biases
and scalars) and ``open_clip_train.scheduler.cosine_lr``; the loss is the caller's (``open_clip.ClipLoss`` for
DFN, MERU's for HYPE).  Data are image-caption pairs drawn by row from sets in the pool layout
(:class:`PairSource`) and labelled sets whose labels become captions through their classification templates
(:class:`LabelledSource`, DFN-FT).

Determinism and resume.  A step's rows, caption templates and augmentation depend only on (run seed, scorer,
phase, step): rows come from seeded per-epoch permutations, templates from a per-step generator, and torch's
global generator (which open_clip's RandomResizedCrop draws from) is re-seeded before each step.  Checkpoints
(model, optimiser, step, loss history) go to ``ctx.checkpoint_dir`` every ``checkpoint_every`` steps and at
each phase's end; a killed fit re-run with the same inputs continues from the last one and ends with the same
weights as an uninterrupted fit (on the same machine and thread count).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from filterbench.harness.contract import StageContext
from filterbench.harness.errors import PluginError
from filterbench.harness.samples import LabelledSamples, PoolSamples, decode_image
from filterbench.harness.seeding import derive_int_seed, derive_rng

CHECKPOINT = "latest.pt"


# -- data -------------------------------------------------------------------------------------------------------
class PairSource:
    """Image-caption pairs of a set in the pool layout (HQ pairs), by row.

    Args:
        samples: the set's :class:`PoolSamples`.
        rows: which of its rows to use (each must have an image and a caption).
        name: the set's folder, for error messages.
    """

    def __init__(self, samples: PoolSamples, rows: np.ndarray, name: str):
        self.samples, self.rows, self.name = samples, np.asarray(rows, np.int64), name

    def __len__(self) -> int:
        return len(self.rows)

    def read(self, index: np.ndarray, rng: np.random.Generator) -> tuple[list[bytes], list[str]]:
        return self.samples.read(self.rows[index])


def pair_sources(pool, val_fraction: float, rng: np.random.Generator) -> tuple[PairSource, PairSource | None]:
    """(training pairs, held-out validation pairs or None) of a paired set: its rows with an image and a
    caption, split by ``rng``."""
    samples = PoolSamples(pool)
    rows = np.flatnonzero(samples.available)
    if not rows.size:
        raise PluginError(f"{pool.root}: no image-caption pairs in its tar shards")
    train, held = split_rows(len(rows), val_fraction, rng)
    validation = PairSource(samples, rows[held], str(pool.root)) if len(held) else None
    return PairSource(samples, rows[train], str(pool.root)), validation


class LabelledSource:
    """A labelled set whose samples are captioned ``template.format(c=classname)``, one template drawn per
    sample and step (the classification templates, as DFN-FT captions ImageNet)."""

    def __init__(self, labelled):
        self.samples = LabelledSamples(labelled.tars)
        self.classnames, self.templates = labelled.classnames, labelled.templates
        self.name = str(labelled.root)
        if int(self.samples.labels.max()) >= len(self.classnames):
            raise PluginError(f"{labelled.root}: label {int(self.samples.labels.max())} but only "
                              f"{len(self.classnames)} class names")

    def __len__(self) -> int:
        return len(self.samples)

    def read(self, index: np.ndarray, rng: np.random.Generator) -> tuple[list[bytes], list[str]]:
        picks = rng.integers(0, len(self.templates), size=len(index))
        captions = [self.templates[t].format(c=self.classnames[self.samples.labels[i]])
                    for i, t in zip(index.tolist(), picks.tolist())]
        return self.samples.read(index), captions


class Mixture:
    """Several sources as one row space (rows drawn uniformly over the union)."""

    def __init__(self, sources: list):
        self.sources = [s for s in sources if len(s)]
        self.bounds = np.cumsum([0] + [len(s) for s in self.sources])
        self.name = " + ".join(s.name for s in self.sources)

    def __len__(self) -> int:
        return int(self.bounds[-1])

    def read(self, index: np.ndarray, rng: np.random.Generator) -> tuple[list[bytes], list[str]]:
        images: list[bytes] = [b""] * len(index)
        texts: list[str] = [""] * len(index)
        owner = np.searchsorted(self.bounds, index, side="right") - 1
        for k, source in enumerate(self.sources):
            at = np.flatnonzero(owner == k)
            if at.size:
                got_images, got_texts = source.read(index[at] - self.bounds[k], rng)
                for j, image, text in zip(at.tolist(), got_images, got_texts):
                    images[j], texts[j] = image, text
        return images, texts


def split_rows(n: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, held-out validation rows) of ``n`` rows; at least one of each when ``fraction`` > 0."""
    order = rng.permutation(n)
    held = min(n - 1, max(1, round(n * fraction))) if fraction > 0 and n > 1 else 0
    return np.sort(order[held:]), np.sort(order[:held])


def step_rows(n: int, batch: int, step: int, seed_path: tuple) -> np.ndarray:
    """The rows of step ``step``: consecutive slices of seeded per-epoch permutations of ``range(n)``."""
    positions = step * batch + np.arange(batch)
    epochs, offsets = np.divmod(positions, n)
    out = np.empty(batch, dtype=np.int64)
    for epoch in np.unique(epochs):
        order = derive_rng(*seed_path, "epoch", int(epoch)).permutation(n)
        mask = epochs == epoch
        out[mask] = order[offsets[mask]]
    return out


# -- the loop ---------------------------------------------------------------------------------------------------
@dataclass
class Phase:
    """One training phase (DFN: ``hq`` then ``ft``): a source, a step count and its optimiser settings."""

    name: str
    source: Any
    steps: int
    batch_size: int
    lr: float
    warmup: int
    weight_decay: float
    validation: Any = None


@dataclass
class Trainer:
    """Trains ``model`` through ``phases`` with ``loss_fn(model, pixels, tokens) -> dict`` (key ``loss``
    is minimised; every other value is logged).

    Attributes:
        after_step: called with the model after each optimiser step (clamping learned scalars).
        history: per phase, the mean of each logged value over windows of ``log_every`` steps, and
            ``val_<name>`` (the loss on the held-out rows) at the phase's end.
    """

    model: Any
    train_preprocess: Callable
    eval_preprocess: Callable
    tokenizer: Callable
    loss_fn: Callable
    ctx: StageContext
    seed_path: tuple
    device: str = "cpu"
    checkpoint_every: int = 100
    log_every: int = 25
    after_step: Callable | None = None
    history: dict = field(default_factory=dict)

    def run(self, phases: list[Phase]) -> dict:
        import torch

        start_phase, start_step, optimizer_state = self._resume()
        for p, phase in enumerate(phases):
            if p < start_phase or phase.steps <= 0:
                continue
            optimizer = adamw(self.model, phase.lr, phase.weight_decay)
            first = start_step if p == start_phase else 0
            if p == start_phase and optimizer_state is not None:
                optimizer.load_state_dict(optimizer_state)
            has_validation = phase.validation is not None and len(phase.validation)
            if first == 0 and has_validation:
                with torch.no_grad():
                    self.history.setdefault(phase.name, {})["val_before"] = self.validate(phase)
            self._phase(p, phase, optimizer, first)
            if has_validation:
                with torch.no_grad():
                    self.history.setdefault(phase.name, {})["val"] = self.validate(phase)
            self._checkpoint(p + 1, 0, None)
        return self.history

    def _phase(self, p: int, phase: Phase, optimizer, first: int) -> None:
        from open_clip_train.scheduler import cosine_lr

        schedule = cosine_lr(optimizer, phase.lr, phase.warmup, phase.steps)
        log = self.history.setdefault(phase.name, {})
        window: dict[str, list[float]] = {}
        self.model.train()
        for step in range(first, phase.steps):
            schedule(step)
            values = self._step(phase, optimizer, step)
            for k, v in values.items():
                window.setdefault(k, []).append(v)
            if (step + 1) % self.log_every == 0 or step + 1 == phase.steps:
                for k, v in window.items():
                    log.setdefault(k, []).append([step + 1, round(float(np.mean(v)), 5)])
                window = {}
            if (step + 1) % self.checkpoint_every == 0 and step + 1 < phase.steps:
                self._checkpoint(p, step + 1, optimizer.state_dict())

    def _step(self, phase: Phase, optimizer, step: int) -> dict[str, float]:
        import torch

        path = (*self.seed_path, phase.name)
        index = step_rows(len(phase.source), phase.batch_size, step, path)
        torch.manual_seed(derive_int_seed(*path, "augment", step))
        pixels, tokens = self._batch(phase.source, index, derive_rng(*path, "captions", step),
                                     self.train_preprocess)
        out = self.loss_fn(self.model, pixels, tokens)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        optimizer.step()
        if self.after_step is not None:
            with torch.no_grad():
                self.after_step(self.model)
        return {k: float(v.detach()) if hasattr(v, "detach") else float(v) for k, v in out.items()}

    def _batch(self, source, index: np.ndarray, rng: np.random.Generator, preprocess):
        import torch

        images, texts = source.read(index, rng)
        pixels = torch.stack([preprocess(decode_image(data, f"{source.name} row {int(i)}"))
                              for data, i in zip(images, index)])
        return pixels.to(self.device), self.tokenizer(texts).to(self.device)

    def validate(self, phase: Phase, batch: int = 256) -> dict[str, float]:
        """Mean of each loss value over the held-out rows, in fixed batches (eval preprocessing)."""
        self.model.eval()
        sums: dict[str, float] = {}
        count = 0
        n = len(phase.validation)
        for start in range(0, n, batch):
            index = np.arange(start, min(n, start + batch))
            rng = derive_rng(*self.seed_path, phase.name, "validation", start)
            pixels, tokens = self._batch(phase.validation, index, rng, self.eval_preprocess)
            out = self.loss_fn(self.model, pixels, tokens)
            for k, v in out.items():
                sums[k] = sums.get(k, 0.0) + float(v) * len(index)
            count += len(index)
        self.model.train()
        return {k: round(v / count, 5) for k, v in sums.items()}

    # -- checkpoints --------------------------------------------------------------------------------------------
    def _checkpoint(self, phase: int, step: int, optimizer_state) -> None:
        import torch

        if self.ctx.checkpoint_dir is None:
            return
        path = Path(self.ctx.checkpoint_dir) / CHECKPOINT
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        torch.save({"phase": phase, "step": step, "model": self.model.state_dict(), "optimizer": optimizer_state,
                    "history": self.history}, tmp)
        os.replace(tmp, path)

    def _resume(self) -> tuple[int, int, Any]:
        import torch

        path = Path(self.ctx.checkpoint_dir) / CHECKPOINT if self.ctx.checkpoint_dir is not None else None
        if path is None or not path.is_file():
            return 0, 0, None
        state = torch.load(path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(state["model"])
        self.history = state["history"]
        self.ctx.log.info("resuming fit from %s (phase %d, step %d)", path, state["phase"], state["step"])
        return state["phase"], state["step"], state["optimizer"]


def adamw(model, lr: float, weight_decay: float):
    """AdamW (betas 0.9/0.98, eps 1e-6) with open_clip_train's rule: no decay on gains, biases, scalars."""
    import torch

    decay, keep = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        exempt = p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name
        (keep if exempt else decay).append(p)
    groups = [{"params": keep, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), eps=1e-6)


def torch_for_fit(seed: int):
    """torch with deterministic kernels and a seeded global generator (model initialisation)."""
    import torch

    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(seed)
    return torch


def save_state_dict(state: dict, path: Path) -> None:
    """``torch.save`` to a temporary name, then rename (a killed fit never leaves half a file)."""
    import torch

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)


def read_state_dict(path: Path) -> dict:
    """A checkpoint's flat state dict: unwraps ``{"state_dict": ...}`` and a DDP ``module.`` prefix (when every
    key carries it).  An unreadable file or anything but a dict fails in one line naming the file."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise PluginError(f"{path}: not a loadable torch checkpoint ({type(exc).__name__}: {exc})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise PluginError(f"{path}: expected a state dict (or a dict with 'state_dict'), got {type(state).__name__}")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state
