"""The fixed scale table: what every method is trained with at each scale.

DataComp's scales (``mlfoundations/datacomp: scale_configs.py``): the pool size equals the samples seen, the
budget is split into 5 checkpoint segments, and no training hyper-parameter may change ("You should not modify
any hyper-parameters for training, including batch size").  The CPU scales ``nano-xs`` and ``nano`` train a tiny
open_clip model on the embedded nano world.  Overriding any fixed knob makes a run *unofficial*.

Training rows checked against ``mlfoundations/datacomp: scale_configs.py`` (datacomp.md §4.1): model, global batch,
lr, warm-up steps, samples seen, beta2 (xlarge only; the others keep open_clip's 0.98), 5 checkpoints, 4
dataloader workers, ``amp`` precision (``amp_bf16`` at xlarge, as DataComp's ``slurm_train.sh`` trains it).
``workers`` is a fixed knob because open_clip rounds every epoch up to a multiple of the workers' batches, so it
changes the step count (DataComp trap 10).  The nano rows' ``samples_seen`` is a multiple of
``segments * batch_size`` so every mode feeds exactly ``samples_seen`` samples (no rounding, see
``harness/training/plan.py``).  ``nano`` trains ``filterbench-nano-rn16`` (``harness/training/model_configs``:
open_clip's ModifiedResNet, layers [1, 1, 1, 1], width 16, with ``filterbench-nano-vit2``'s text tower), which
learns the nano objects two to three times faster than the ViT and costs less per step (docs/nano.md 9.3);
``nano-xs``, the tests' row, keeps ``filterbench-nano-vit2`` (4 x 128 ViT, patch 8), whose vision tower
learns colour and shape at lr 2e-3 and weight decay 0.1.  ``nano`` sees 96,000 samples
(1.5 passes over its pool) within its time budget.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from filterbench.harness.contract import Budget
from filterbench.harness.errors import RecipeError
from filterbench.harness.hashing import content_key

#: knobs that define the benchmark; changing any of them marks a run unofficial
FIXED_KNOBS = ("model", "batch_size", "lr", "warmup", "samples_seen", "beta2", "segments", "precision",
               "wd", "image_size", "workers")


@dataclass(frozen=True)
class Scale:
    """One row of the scale table.

    Attributes:
        name: scale name.
        model: open_clip model name.
        batch_size: global batch size.
        lr: peak learning rate (cosine schedule with linear warm-up).
        warmup: warm-up steps.
        samples_seen: the training budget in samples.
        pool_size: uids in the scale's pool (None: whatever the user's pool holds).
        beta2: AdamW beta2 when DataComp passes one (xlarge), else None (open_clip's default).
        segments: checkpoint segments ("epochs" of open_clip_train).
        precision: open_clip_train ``--precision``.
        workers: dataloader workers per process (part of DataComp's exact step count).
        wd: weight decay.
        image_size: model input resolution.
        cpu: whether the scale is meant to train on CPU.
        cpu_threads: torch intra-op threads of a single-process CPU training (DDP ranks use 1 each).  Part of the
            scale's key because the thread count can change float summation order, hence the bytes.
    """

    name: str
    model: str
    batch_size: int
    lr: float
    warmup: int
    samples_seen: int
    pool_size: int | None = None
    beta2: float | None = None
    segments: int = 5
    precision: str = "amp"
    workers: int = 4
    wd: float = 0.2
    image_size: int = 224
    cpu: bool = False
    cpu_threads: int = 1

    def budget(self, pool_size: int) -> Budget:
        return Budget(samples_seen=self.samples_seen, segments=self.segments, pool_size=pool_size)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def key(self) -> str:
        return content_key(self.as_dict())

    def with_overrides(self, **overrides: Any) -> tuple[Scale, bool]:
        """A copy with ``overrides`` applied, and whether it is still official (no fixed knob changed)."""
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise RecipeError(f"scale {self.name!r}: unknown setting(s) {unknown}")
        changed = {k for k, v in overrides.items() if getattr(self, k) != v}
        return dataclasses.replace(self, **overrides), not (changed & set(FIXED_KNOBS))


SCALES: dict[str, Scale] = {s.name: s for s in (
    Scale("debug", "ViT-B-32", 1024, 1e-4, 500, 128_000),
    Scale("small", "ViT-B-32", 4096, 5e-4, 500, 12_800_000, pool_size=12_800_000),
    Scale("medium", "ViT-B-32", 4096, 5e-4, 500, 128_000_000, pool_size=128_000_000),
    Scale("large", "ViT-B-16", 8192, 5e-4, 500, 1_280_000_000, pool_size=1_280_000_000),
    Scale("xlarge", "ViT-L-14", 90112, 1e-3, 10_000, 12_800_000_000, pool_size=12_800_000_000, beta2=0.95,
          precision="amp_bf16"),
    # CPU scales on the nano world (32 px images, a tiny ViT registered with open_clip).  One training thread:
    # the dataloader worker needs part of the second core, and two torch threads on the remaining 1.6 cores
    # stall on each other (300 samples/s against 400 with one).  The budget is one recipe-seed, train +
    # eval, within 5 minutes on 2 cores; docs/training.md has the measurements behind these rows.
    Scale("nano-xs", "filterbench-nano-vit2", 128, 2e-3, 20, 16_000, pool_size=8_000, precision="fp32",
          workers=1, wd=0.1, image_size=32, cpu=True, cpu_threads=1),
    Scale("nano", "filterbench-nano-rn16", 256, 2e-3, 50, 96_000, pool_size=64_000, precision="fp32",
          workers=1, wd=0.1, image_size=32, cpu=True, cpu_threads=1),
)}


@dataclass(frozen=True)
class ResolvedScale:
    """A scale row after its overrides: what the trainer trains, and what manifests and records report.

    Built once, by :func:`resolve_scale`, where a command or API call starts; the runner and the train stage
    receive it unchanged, so the row that is trained and the ``official`` flag that is recorded cannot disagree.

    Attributes:
        row: the scale row with the overrides applied.
        official: False when an override changed a fixed knob (:data:`FIXED_KNOBS`).
        overrides: the overrides as given (read-only), for manifests and records.
    """

    row: Scale
    official: bool
    overrides: Mapping[str, Any]

    @property
    def name(self) -> str:
        return self.row.name

    def overrides_dict(self) -> dict[str, Any]:
        """The overrides as a plain dict (JSON-able), a copy."""
        return dict(self.overrides)


def resolve_scale(name: str, overrides: Mapping[str, Any] | None = None) -> ResolvedScale:
    """The scale ``name`` with ``overrides`` applied; unknown scales and knobs fail with one line."""
    given = dict(overrides or {})
    row, official = get_scale(name).with_overrides(**given)
    return ResolvedScale(row, official, MappingProxyType(given))


def get_scale(name: str) -> Scale:
    """A scale by name; unknown names fail with "did you mean"."""
    import difflib

    if name in SCALES:
        return SCALES[name]
    close = difflib.get_close_matches(name, list(SCALES), n=2, cutoff=0.5)
    hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
    raise RecipeError(f"unknown scale {name!r}{hint} (known: {', '.join(SCALES)})")
