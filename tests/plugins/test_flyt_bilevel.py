"""FLYT's inner AdamW step and its Jacobian, and the hypergradient against central finite differences."""

from __future__ import annotations

import pytest
import torch

from filterbench.plugins.flyt.adamw import AdamWConfig, AdamWState, adamw_step, decays, jacobian_diag
from filterbench.plugins.flyt.bilevel import (
    SCALE,
    Downstream,
    Reference,
    StepConfig,
    Upstream,
    downstream_gradient,
    hypergradient,
    upstream_gradient,
)
from filterbench.plugins.flyt.dist import SINGLE


def _params(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"visual.proj": torch.randn(4, 3, generator=g, dtype=torch.float64),
            "ln_final.weight": torch.randn(3, generator=g, dtype=torch.float64),
            "visual.conv.bias": torch.randn(3, generator=g, dtype=torch.float64),
            SCALE: torch.tensor(2.0, dtype=torch.float64)}


def test_adamw_step_equals_torch_adamw_over_several_steps():
    cfg = AdamWConfig(weight_decay=0.2)
    params = _params()
    torch_params = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    groups = [{"params": [p for n, p in torch_params.items() if decays(n, p)], "weight_decay": 0.2},
              {"params": [p for n, p in torch_params.items() if not decays(n, p)], "weight_decay": 0.0}]
    optimiser = torch.optim.AdamW(groups, lr=0.01, betas=(0.9, 0.98), eps=1e-6)
    state, ours = AdamWState(), params
    for step in range(4):
        grads = {k: torch.randn_like(v, generator=None) for k, v in _params(seed=step + 10).items()}
        result = adamw_step(ours, grads, state, 0.01, cfg)
        ours, state = result.params, result.state
        for name, p in torch_params.items():
            p.grad = grads[name].clone()
        optimiser.step()
    assert decays("visual.proj", params["visual.proj"]) and not decays("ln_final.weight", params["ln_final.weight"])
    for name, p in torch_params.items():
        torch.testing.assert_close(ours[name], p.detach(), rtol=1e-12, atol=1e-14)
    assert state.step == 4


def test_jacobian_diag_equals_autograd_and_zero_second_moment_takes_no_step():
    cfg = AdamWConfig()
    params = _params()
    state = adamw_step(params, {k: torch.randn_like(v) for k, v in params.items()}, AdamWState(), 0.01, cfg).state
    state.v["visual.proj"] = state.v["visual.proj"].clone()
    state.v["visual.proj"][0, 0] = 0.0
    grads = {k: torch.randn_like(v).requires_grad_(True) for k, v in params.items()}
    grads["visual.proj"].data[0, 0] = 0.0  # v stays 0 there: the masked coordinate
    result = adamw_step(params, grads, state, 0.01, cfg)
    jac = jacobian_diag(result, grads, 0.01, cfg)
    for name, g in grads.items():
        # theta+_j depends on g_j alone, so the gradient of sum(theta+) is the diagonal
        (auto,) = torch.autograd.grad(result.params[name].sum(), g, retain_graph=True)
        torch.testing.assert_close(jac[name], auto, rtol=1e-10, atol=1e-14)
    decay = 1 - 0.01 * cfg.weight_decay
    moved = float(result.params["visual.proj"][0, 0].detach())
    assert moved == pytest.approx(float(params["visual.proj"][0, 0]) * decay)
    assert float(jac["visual.proj"][0, 0]) == 0.0


def _tiny_problem(loss: str):
    import open_clip

    from filterbench.harness.assets import register_model_configs

    register_model_configs()
    torch.manual_seed(0)
    model = open_clip.create_model("filterbench-micro-vit").double()
    tokenizer = open_clip.get_tokenizer("filterbench-micro-vit")
    g = torch.Generator().manual_seed(1)
    up = Upstream(torch.randn(8, 3, 32, 32, generator=g, dtype=torch.float64),
                  tokenizer([f"a photo of thing {i}" for i in range(8)]), 8)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    prompts = tokenizer(["a cat", "a dog", "a car"])
    down = Downstream(torch.randn(6, 3, 32, 32, generator=g, dtype=torch.float64), labels,
                      None if loss == "clip" else prompts, prompts[labels] if loss == "clip" else None)
    ref = Reference(model)
    theta = ref.params()
    cfg = StepConfig(lr=1e-2, loss=loss)
    state = AdamWState()
    for seed in range(2):  # a non-trivial moment state, as in the middle of a fit
        gen = torch.Generator().manual_seed(100 + seed)
        grads = {k: 1e-2 * torch.randn(v.shape, generator=gen, dtype=v.dtype) for k, v in theta.items()}
        state = adamw_step(theta, grads, state, 1e-3, cfg.adam).state
    return ref, theta, state, up, down, cfg


@pytest.mark.parametrize("loss", ["ce", "ce_temp", "clip"])
def test_hypergradient_matches_central_finite_differences(loss):
    ref, theta, state, up, down, cfg = _tiny_problem(loss)
    scale = torch.tensor(2.65926, dtype=torch.float64)
    scores = torch.randn(8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    result = hypergradient(ref, theta, state, scores, up, down, cfg, scale)

    def downstream_loss(s):
        grads, _, _ = upstream_gradient(ref, theta, up, torch.log_softmax(s, 0), SINGLE)
        inner = adamw_step(theta, grads, state, cfg.lr, cfg.adam)
        return downstream_gradient(ref, inner.params, down, loss, scale, SINGLE)[2]

    h = 1e-4
    numeric = torch.tensor([(downstream_loss(scores + h * e) - downstream_loss(scores - h * e)) / (2 * h)
                            for e in torch.eye(8, dtype=torch.float64)], dtype=torch.float64)
    relative = float((numeric - result.dscores).norm() / numeric.norm())
    assert relative < 1e-5, (relative, numeric, result.dscores)
    assert float(result.dscores.sum()) == pytest.approx(0.0, abs=1e-12)  # softmax: shift-invariant scores
