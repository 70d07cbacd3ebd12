"""Training the reference models in-process with open_clip's own pieces.

``open_clip.create_model`` (a config from ``model_configs/``), ``open_clip.ClipLoss``, ``open_clip.get_tokenizer``,
AdamW with open_clip_train's weight-decay rule, and ``open_clip_train.scheduler.cosine_lr``.  One thread, a
seeded torch generator and seeded batches: on a given machine the same seed gives the same checkpoint bytes.

Teacher supervision.  The real reference models (OpenAI's CLIPs, DINOv2) saw hundreds of millions of images; a
build can afford tens of thousands of steps-worth of samples.  A tiny CLIP learns colours and scenes within a few
thousand samples but silhouettes, positions and textures only much later, so each reference model also trains
linear heads that predict the clean sample's ground truth (object class, colour, count, position, size,
texture, background) from the unnormalised image embedding and, with the *same* weights, from the text
embedding of captions that state the attribute.  Shared heads put each attribute in the same directions of both
towers, which is what zero-shot transfer needs.  The heads are dropped: checkpoints are plain open_clip models.
The teachers also read: their clean sample holds signs captioned with their words, whose class and colour
labels are the words' (real CLIPs learned to read from web data, which is why they rank such pairs highest).
The DINOv2-role model trains its image tower only, with a SimCLR-style InfoNCE between two augmented views plus
an object-class head that outweighs it (so its clusters follow concepts, as DINOv2's do); its text tower stays
untrained.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from filterbench.harness.nano.refmodels import register_models, to_tensor
from filterbench.harness.nano.world import RefTraining
from filterbench.harness.librarylogs import expected_random_init
from filterbench.harness.seeding import derive_int_seed, derive_rng

AUX_WEIGHT = 0.5  # weight of the auxiliary heads against the contrastive loss
# The DINOv2-role model's class head outweighs its view-contrastive term: with the contrastive term leading,
# its clusters followed colour and scene (10-NN class purity 0.24 on the v1 world) and DynamiCS, which needs
# concept clusters, had nothing to work with; at weight 5 the class signal leads and the views still spread
# the embedding (purity about 0.5; the probes: docs/changelog.md, 2026-11-22)
DINO_AUX_WEIGHT = 5.0
HEAD_WEIGHTS = {"cls": 1.0, "position": 1.5, "texture": 1.0, "other": 0.5}  # the hardest attributes weigh the most
HEAD_SCALE = 10.0  # inverse temperature of the prototype heads' cosine logits
DINO_TEMPERATURE = 0.1
DINO_HEADS = ("cls",)


def _torch_setup(seed: int):
    import torch

    torch.set_num_threads(1)  # ecosystem trap 5, and one thread keeps float reductions in a fixed order
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return torch


def _optimizer(torch, params: list[tuple[str, object]], spec: RefTraining):
    # open_clip_train's rule: no weight decay on gains, biases and the logit scale
    decay, keep = [], []
    for name, p in params:
        (keep if p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name
         else decay).append(p)
    groups = [{"params": keep, "weight_decay": 0.0}, {"params": decay, "weight_decay": spec.wd}]
    # fused: one kernel per step instead of a loop over tensors (the 49,408-row token table dominates)
    return torch.optim.AdamW(groups, lr=spec.lr, betas=(0.9, 0.98), eps=1e-6, fused=True)


def _batches(seed: int, role: str, n: int, batch: int, steps: int):
    """Index batches: epochs of seeded permutations, so every image is seen equally often."""
    rng = derive_rng(seed, "ref", role, "batches")
    order = np.empty(0, dtype=np.int64)
    for _ in range(steps):
        if len(order) < batch:
            order = np.concatenate([order, rng.permutation(n)])
        yield order[:batch]
        order = order[batch:]


def _augment(torch, x, gen):
    """A view for the image-only objective: shift up to 4 px, mirror, exposure and noise."""
    n = x.shape[0]
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4), mode="reflect")
    dy = torch.randint(0, 9, (n,), generator=gen)
    dx = torch.randint(0, 9, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(32)[None, :])[:, None, :, None].expand(n, 3, 32, 40)
    cols = (dx[:, None] + torch.arange(32)[None, :])[:, None, None, :].expand(n, 3, 32, 32)
    out = torch.gather(torch.gather(padded, 2, rows), 3, cols)
    flip = torch.rand(n, generator=gen) < 0.5
    out = torch.where(flip[:, None, None, None], out.flip(3), out)
    gain = 1 + 0.3 * (torch.rand(n, 1, 1, 1, generator=gen) - 0.5)
    return out * gain + 0.1 * torch.randn(out.shape, generator=gen)


class _Heads:
    """One cosine-prototype head per attribute, shared by the image and the text tower.

    Logits are scaled cosines between the embedding and one prototype per value, so the heads shape the very
    geometry zero-shot classification uses (a linear head on raw features would not: it can read an attribute
    from directions the cosine barely sees).
    """

    def __init__(self, torch, dim: int, labels: dict[str, np.ndarray], names: tuple[str, ...]):
        self.torch = torch
        self.labels = {k: torch.from_numpy(np.asarray(labels[k], dtype=np.int64)) for k in names}
        self.prototypes = {k: torch.nn.Parameter(torch.randn(int(self.labels[k].max()) + 1, dim) / dim ** 0.5)
                           for k in names}
        self.last: dict[str, float] = {}

    def named_parameters(self):
        return [(f"head.{k}.prototypes", p) for k, p in self.prototypes.items()]

    def logits(self, name: str, embedding):
        f = self.torch.nn.functional
        return HEAD_SCALE * f.normalize(embedding, dim=-1) @ f.normalize(self.prototypes[name], dim=-1).T

    def loss(self, raw, index, labels=None, tag: str = "image"):
        """Weighted sum of the heads' cross-entropies; label -1 means unknown (ignored)."""
        labels = self.labels if labels is None else labels
        f = self.torch.nn.functional
        total = raw.new_zeros(())
        for k in self.prototypes:
            target = labels[k][index]
            if bool((target >= 0).any()):
                term = f.cross_entropy(self.logits(k, raw), target, ignore_index=-1)
                self.last[f"{tag}_{k}"] = float(term.detach())
                total = total + HEAD_WEIGHTS.get(k, HEAD_WEIGHTS["other"]) * term
        return total


def train_reference(role: str, spec: RefTraining, images: np.ndarray, captions: list[str],
                    labels: dict[str, np.ndarray], text_labels: dict[str, np.ndarray], seed: int, out: Path) -> dict:
    """Train one reference model and save ``{"state_dict": ...}`` to ``out``; returns a small log.

    Args:
        labels: ground truth per image for each attribute head (``cls``, ``colour``, ...).
        text_labels: the same attributes as stated by each caption, -1 where the caption does not state it.
    """
    torch = _torch_setup(derive_int_seed(seed, "ref", role, "init"))
    import open_clip
    from open_clip_train.scheduler import cosine_lr

    register_models()
    with expected_random_init():  # a reference model is trained from scratch on purpose
        model = open_clip.create_model(spec.model)
    model.train()
    x = to_tensor(images)
    heads = _Heads(torch, model.visual.output_dim, labels, DINO_HEADS if role == "dino" else tuple(labels))
    if role == "dino":
        vocab = None
        step_loss = _dino_step(torch, model, x, heads, derive_int_seed(seed, "ref", role, "augment"))
    else:
        tokens = open_clip.get_tokenizer(spec.model)(captions)
        vocab = _compact_vocabulary(torch, model, tokens)
        step_loss = _clip_step(torch, model, x, heads, torch.searchsorted(vocab, tokens), text_labels)
    steps = max(1, spec.samples // spec.batch_size)
    optimizer = _optimizer(torch, list(model.named_parameters()) + heads.named_parameters(), spec)
    schedule = cosine_lr(optimizer, spec.lr, spec.warmup, steps)
    losses = []
    for step, index in enumerate(_batches(seed, role, len(x), spec.batch_size, steps)):
        schedule(step)
        loss = step_loss(torch.from_numpy(index))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(float(loss.detach()))
    if vocab is not None:
        _restore_vocabulary(torch, model, vocab)
    _save(torch, model, out)
    return {"role": role, "steps": steps, "first_loss": round(losses[0], 4),
            "final_loss": round(float(np.mean(losses[-20:])), 4),
            "final_head_losses": {k: round(v, 4) for k, v in sorted(heads.last.items())}}


def _save(torch, model, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    torch.save({"state_dict": model.state_dict()}, tmp)
    tmp.replace(out)


def _compact_vocabulary(torch, model, tokens):
    """Train only the token-table rows the captions use (a few hundred of 49,408).

    The full table's dense gradient and AdamW update would cost more than the rest of a step.  Rows of unused
    tokens receive no gradient either way; they keep their initial values (plain training would only decay
    them slightly).  Sorted ids keep the end-of-text token the largest, which open_clip's argmax pooling needs.
    """
    vocab = torch.unique(tokens)
    full = model.token_embedding
    small = torch.nn.Embedding(len(vocab), full.embedding_dim)
    with torch.no_grad():
        small.weight.copy_(full.weight[vocab])
    model.token_embedding = small
    model._full_token_embedding = [full]  # a list keeps it out of the module tree while training
    return vocab


def _restore_vocabulary(torch, model, vocab) -> None:
    full = model._full_token_embedding[0]
    with torch.no_grad():
        full.weight[vocab] = model.token_embedding.weight
    model.token_embedding = full
    del model._full_token_embedding


def _clip_step(torch, model, x, heads: _Heads, tokens, text_labels: dict[str, np.ndarray]):
    import open_clip

    clip_loss = open_clip.ClipLoss()
    f = torch.nn.functional
    text_targets = {k: torch.from_numpy(np.asarray(text_labels[k], dtype=np.int64)) for k in heads.prototypes}

    def step(index):
        image, text = model.encode_image(x[index]), model.encode_text(tokens[index])
        loss = clip_loss(f.normalize(image, dim=-1), f.normalize(text, dim=-1), model.logit_scale.exp())
        return loss + AUX_WEIGHT * (heads.loss(image, index) + heads.loss(text, index, text_targets, "text"))

    return step


def _dino_step(torch, model, x, heads: _Heads, seed: int):
    gen = torch.Generator().manual_seed(seed)
    f = torch.nn.functional

    def step(index):
        batch = x[index]
        n = len(index)
        # both views in one forward pass: one batch of 2n costs less than two of n on one thread
        raw = model.encode_image(torch.cat([_augment(torch, batch, gen), _augment(torch, batch, gen)]))
        a, b = f.normalize(raw[:n], dim=-1), f.normalize(raw[n:], dim=-1)
        logits = a @ b.T / DINO_TEMPERATURE
        target = torch.arange(n)
        loss = (f.cross_entropy(logits, target) + f.cross_entropy(logits.T, target)) / 2
        # both views carry the image's labels: twice the class signal for the same forward passes
        return loss + DINO_AUX_WEIGHT * heads.loss(raw, torch.cat([index, index]))

    return step
