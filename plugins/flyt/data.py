"""FLYT's batches: every step draws its upstream and downstream rows from generators seeded by (seed, step).

What step ``k`` sees therefore depends on the seed and ``k`` only: a resumed fit continues exactly where an
uninterrupted one would be, and a run on W ranks sees the same global batch as a run on one (each rank reads
and preprocesses only its contiguous share).  Augmentation (open_clip's train transform: RandomResizedCrop
with scale 0.9-1) is seeded per (step, position in the global batch) for the same reason.

- Upstream: ``up_batch`` distinct rows per step, uniformly from the candidate pool rows (rows whose image and
  caption are in the tar shards, optionally a seeded subset of ``fit_rows`` of them).  The scoring model reads
  its inputs for those rows from a matrix prepared once per fit (stored features for FLYT, standardised score
  columns for M-FLYT); the reference model reads the raw image and caption from the tars.
- Downstream: ``down_batch`` distinct rows of the labelled set per step, and one template per class drawn
  uniformly per step (all classes present, flyt.md trap 9); ``clip`` pairs each image with its class's
  templated caption instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from filterbench.harness.samples import LabelledSamples, PoolSamples, decode_image
from filterbench.harness.seeding import derive_int_seed, derive_rng
from filterbench.plugins.flyt.bilevel import Downstream, Upstream
from filterbench.plugins.flyt.dist import Group


@dataclass
class Labelled:
    samples: LabelledSamples
    classnames: tuple[str, ...]
    templates: tuple[str, ...]


class StepBatches:
    """Seeded per-step batches for one rank.

    Args:
        pool_samples: raw pool samples (images, captions) by pool row.
        candidates: the pool rows upstream batches are drawn from (sorted).
        inputs: per candidate (same order), the scoring model's input row (features or scores), float32.
        labelled: the downstream set.
        preprocess, tokenizer: the reference model's train transform and tokenizer.
    """

    def __init__(self, pool_samples: PoolSamples, candidates: np.ndarray, inputs: np.ndarray, labelled: Labelled,
                 preprocess, tokenizer, seed: int, up_batch: int, down_batch: int, loss: str, group: Group,
                 device: str = "cpu", dtype: torch.dtype = torch.float32):
        self.pool, self.candidates, self.inputs, self.labelled = pool_samples, candidates, inputs, labelled
        self.preprocess, self.tokenizer, self.seed, self.loss = preprocess, tokenizer, seed, loss
        self.up_batch, self.down_batch, self.group, self.device = up_batch, down_batch, group, device
        self.dtype = dtype

    def upstream_positions(self, step: int) -> np.ndarray:
        """Indices into ``candidates`` of the global upstream batch of ``step``."""
        rng = derive_rng(self.seed, "flyt", "upstream", step)
        n = len(self.candidates)
        return rng.choice(n, size=self.up_batch, replace=self.up_batch > n)

    def upstream(self, step: int) -> tuple[torch.Tensor, Upstream]:
        """(this rank's scoring-model inputs, this rank's Upstream) of ``step``."""
        positions = self.upstream_positions(step)
        share = self.group.share(len(positions))
        mine = positions[share]
        images, texts = self.pool.read(self.candidates[mine])
        pixels = self._pixels(images, step, "up", share.start, "pool")
        inputs = torch.from_numpy(np.ascontiguousarray(self.inputs[mine], dtype=np.float32))
        return inputs.to(self.device, self.dtype), Upstream(pixels, self.tokenizer(texts).to(self.device), len(positions))

    def downstream(self, step: int) -> Downstream:
        rng = derive_rng(self.seed, "flyt", "downstream", step)
        n = len(self.labelled.samples)
        rows = rng.choice(n, size=self.down_batch, replace=self.down_batch > n)
        templates = self.labelled.templates
        picks = rng.integers(len(templates), size=len(self.labelled.classnames))
        prompts = [templates[t].format(c=c) for t, c in zip(picks, self.labelled.classnames)]
        share = self.group.share(len(rows))
        mine = rows[share]
        labels = torch.from_numpy(self.labelled.samples.labels[mine]).to(self.device)
        pixels = self._pixels(self.labelled.samples.read(mine), step, "down", share.start, "downstream set")
        if self.loss == "clip":
            captions = self.tokenizer([prompts[int(c)] for c in labels.tolist()]).to(self.device)
            return Downstream(pixels, labels, None, captions)
        classes = self.tokenizer(prompts[self.group.share(len(prompts))]).to(self.device)
        return Downstream(pixels, labels, classes, None)

    def _pixels(self, images: list[bytes], step: int, stream: str, first: int, where: str) -> torch.Tensor:
        out = []
        for offset, data in enumerate(images):
            # one seed per (step, global position): the same crop whichever rank preprocesses the image
            torch.manual_seed(derive_int_seed(self.seed, "flyt", "augment", stream, step, first + offset))
            out.append(self.preprocess(decode_image(data, where)))
        return torch.stack(out).to(self.device, self.dtype)
