"""Probes of what FLYT's objective prefers on a pool: the one-step hypergradient along a score direction, split
by parameter group, and what real weighted training along that direction does to the downstream loss.

``filterbench flyt-probe lookahead``: with scores s = beta * z (z: a pool column standardised over the pool),
the derivative d L_down(theta+) / d beta at beta = 0, averaged over ``steps`` seeded batches (the reference's
moments advance as in a fit; the reference itself stays put), in total and restricted to the parameters of the
image tower, the text transformer and the token embedding (v set to zero elsewhere).  Positive: weighting
towards high z raises the stepped model's downstream loss.

``filterbench flyt-probe train``: ``steps`` real AdamW steps of the reference on the beta-weighted CLIP loss,
for each beta, then the downstream cross-entropy on held-out downstream images (mean of every template per
class, logit scale 14.3).  What many steps really do, against what one step's derivative says.

Used for docs/methods/flyt.md ("Does it hold on nano"); not part of any recipe.
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

# torch and the trainer are imported inside the functions: this module is loaded with the CLI (register_commands)
GROUPS = {"image tower": lambda n: n.startswith("visual."),
          "token embedding": lambda n: n == "token_embedding.weight",
          "text transformer": lambda n: not n.startswith("visual.") and n != "token_embedding.weight"}


def _fit(pool, column: str, work: Path, batch: int, seed: int):
    """A FLYT fit state whose 'scoring input' is the standardised column (so batches carry z)."""
    from filterbench.harness.samples import PoolSamples
    from filterbench.plugins.flyt.dist import SINGLE
    from filterbench.plugins.flyt.trainer import Fit, FitSpec

    rows = np.flatnonzero(PoolSamples(pool).available)
    raw = np.concatenate([pool.read_metadata(s, (column,))[column] for s in pool.shards]).astype(np.float64)
    z = (raw - raw.mean()) / raw.std()
    np.save(work / "candidates.npy", rows)
    np.save(work / "inputs.npy", z[rows][:, None].astype(np.float32))
    spec = FitSpec(kind="mflyt", pool_root=str(pool.root), inputs_path=str(work / "inputs.npy"),
                   candidates_path=str(work / "candidates.npy"), reference_model="world:b32",
                   reference_checkpoint=None, downstream="world:downstream", loss="ce_temp", steps=1,
                   up_batch=batch, down_batch=3 * batch // 4, lr_reference=5e-5, lr_scoring=1e-3, warmup=1,
                   update_reference=False, weight_decay=0.2, seed=seed, checkpoint_dir=str(work),
                   state_dir=str(work), checkpoint_every=1)
    return Fit(spec, SINGLE)


def lookahead(fit, steps: int, lr: float = 5e-5) -> dict[str, list[float]]:
    """Per step and parameter group, d L_down(theta+) / d beta at beta = 0 (scores s = beta z)."""
    import torch

    from filterbench.plugins.flyt import bilevel
    from filterbench.plugins.flyt.adamw import AdamWConfig, adamw_step, detach_state, jacobian_diag
    from filterbench.plugins.flyt.dist import SINGLE

    cfg, out = AdamWConfig(), {name: [] for name in ("all", *GROUPS)}
    for k in range(steps):
        inputs, up = fit.batches.upstream(k)
        down = fit.batches.downstream(k)
        z = inputs[:, 0]
        flat = torch.zeros_like(z)
        grads, cache, _ = bilevel.upstream_gradient(fit.ref, fit.theta, up, torch.log_softmax(flat, 0), SINGLE)
        inner = adamw_step(fit.theta, grads, fit.adam, lr, cfg)
        jac = jacobian_diag(inner, grads, lr, cfg)
        down_grads, _, _ = bilevel.downstream_gradient(fit.ref, inner.params, down, "ce_temp", fit.down_scale,
                                                       SINGLE)
        v = {n: jac[n] * down_grads[n] for n in down_grads}
        for name, keep in [("all", lambda n: True), *GROUPS.items()]:
            part = {n: t if keep(n) else torch.zeros_like(t) for n, t in v.items()}
            dscores = bilevel.score_gradient(fit.ref, fit.theta, up, part, cache, flat, SINGLE)
            out[name].append(float(dscores @ z))
        fit.adam = detach_state(inner.state)
    return out


def weighted_training(fit, betas: list[float], steps: int, lr: float, held_out: int = 1000) -> dict:
    """Downstream CE on held-out downstream images after ``steps`` AdamW steps on the beta-weighted loss."""
    import copy

    import torch
    import torch.nn.functional as F

    from filterbench.harness.samples import decode_image
    from filterbench.plugins.flyt.loss import weighted_clip_loss

    model, tokenizer = fit.ref.model, fit.batches.tokenizer
    labelled = fit.batches.labelled
    rows = np.random.default_rng(0).choice(len(labelled.samples), min(held_out, len(labelled.samples)),
                                           replace=False)
    preprocess = fit.batches.preprocess
    images = torch.stack([preprocess(decode_image(b)) for b in labelled.samples.read(rows)])
    labels = torch.from_numpy(labelled.samples.labels[rows])
    prompts = [[t.format(c=c) for t in labelled.templates] for c in labelled.classnames]

    def downstream_ce(m) -> float:
        with torch.no_grad():
            x = m.encode_image(images, normalize=True)
            classes = F.normalize(torch.stack([m.encode_text(tokenizer(p), normalize=True).mean(0)
                                               for p in prompts]), dim=-1)
            return float(F.cross_entropy(14.3 * x @ classes.T, labels))

    results = {"before": downstream_ce(model)}
    for beta in betas:
        trained = copy.deepcopy(model)
        optimiser = torch.optim.AdamW(trained.parameters(), lr=lr, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.2)
        for k in range(steps):
            inputs, up = fit.batches.upstream(k)
            image, text, scale = trained(up.images, up.texts)
            loss = weighted_clip_loss(image, text, scale, torch.log_softmax(beta * inputs[:, 0], 0))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        results[beta] = downstream_ce(trained)
    return results


@click.group("flyt-probe")
def probe_group() -> None:
    """What FLYT's objective prefers on a pool (docs/methods/flyt.md)."""


def _common(func):
    func = click.option("--pool", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
                        help="A pool inside a world (world:b32 reference, world:downstream set).")(func)
    func = click.option("--column", default="clip_l14_similarity_score", show_default=True,
                        help="Pool metadata column defining the direction z.")(func)
    from filterbench.harness.cli.common import COUNT, SEED, one_line_errors

    func = click.option("--steps", default=30, type=COUNT, show_default=True)(func)
    func = click.option("--batch", default=256, type=COUNT, show_default=True)(func)
    func = click.option("--seed", default=0, type=SEED, show_default=True)(func)
    return one_line_errors(func)  # a harness error (no such world asset, bad pool) is one line, exit 2


@probe_group.command("lookahead")
@_common
def lookahead_cmd(pool, column, steps, batch, seed) -> None:
    """d L_down(theta+) / d beta for scores beta * z, by parameter group (mean +- standard error)."""
    import tempfile

    import torch

    from filterbench.harness.pool import Pool

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as work:
        found = lookahead(_fit(Pool(pool), column, Path(work), batch, seed), steps)
    for name, values in found.items():
        values = np.asarray(values)
        click.echo(f"{name:18s} {values.mean():+.3e} +- {values.std(ddof=1) / np.sqrt(len(values)):.1e}")


@probe_group.command("train")
@_common
@click.option("--beta", "betas", multiple=True, type=float, default=(2.0, 0.0, -2.0), show_default=True)
@click.option("--lr", default=5e-5, show_default=True)
def train_cmd(pool, column, steps, batch, seed, betas, lr) -> None:
    """Held-out downstream CE after real weighted training towards high (beta > 0) or low z."""
    import tempfile

    import torch

    from filterbench.harness.pool import Pool

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as work:
        found = weighted_training(_fit(Pool(pool), column, Path(work), batch, seed), list(betas), steps, lr)
    for key, value in found.items():
        click.echo(f"{'beta ' + str(key) if key != 'before' else 'before':12s} {value:.4f}")
