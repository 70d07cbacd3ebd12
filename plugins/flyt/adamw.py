"""The reference model's inner step: AdamW with live moments, and its closed-form Jacobian in the gradient.

FLYT's one-step lookahead moves the reference model by one AdamW step on the weighted loss's gradient g,
using the reference optimiser's *running* first and second moments and step counter (flyt.md 2.3, trap 4):

    t <- t + 1;  m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
    m^ = m / (1 - b1^t);  v^ = v / (1 - b2^t)
    theta+ = theta (1 - lr wd [decayed]) - lr m^ / (sqrt(v^) + eps)          (PyTorch's AdamW, exactly)

AdamW is coordinate-wise, so d theta+ / d g is diagonal (flyt.md 2.3, [R]):

    d theta+ / d g = -lr [ a / (sqrt(v^) + eps) - m^ b g / (sqrt(v^) (sqrt(v^) + eps)^2) ],
    a = (1 - b1) / (1 - b1^t),  b = (1 - b2) / (1 - b2^t)

Coordinates with v^ = 0 (a parameter that never had a gradient) take no Adam step and get a zero derivative,
instead of the infinite derivative of sqrt at 0.  Weight decay applies to matrices only (ndim >= 2, names
without bn/ln/bias/logit_scale), as open_clip's and FLYT's parameter groups do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

Tensors = dict[str, torch.Tensor]
_NO_DECAY = ("bn", "ln", "bias", "logit_scale")


@dataclass(frozen=True)
class AdamWConfig:
    """open_clip's ViT defaults (flyt.md 2.6): betas (0.9, 0.98), eps 1e-6, decoupled weight decay 0.2."""

    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-6
    weight_decay: float = 0.2


@dataclass
class AdamWState:
    """The running moments and the step counter, one tensor per parameter name."""

    m: Tensors = field(default_factory=dict)
    v: Tensors = field(default_factory=dict)
    step: int = 0

    def as_dict(self) -> dict:
        return {"m": self.m, "v": self.v, "step": self.step}

    @classmethod
    def from_dict(cls, data: dict) -> "AdamWState":
        return cls(dict(data["m"]), dict(data["v"]), int(data["step"]))


def decays(name: str, param: torch.Tensor) -> bool:
    """Whether weight decay applies to this parameter (matrices, not gains, biases or logit scales)."""
    return param.ndim >= 2 and not any(part in name for part in _NO_DECAY)


@dataclass
class InnerStep:
    """The result of one AdamW step: new parameters, new state, and the pieces its Jacobian needs."""

    params: Tensors
    state: AdamWState
    m_hat: Tensors
    v_hat: Tensors


def adamw_step(params: Tensors, grads: Tensors, state: AdamWState, lr: float, cfg: AdamWConfig) -> InnerStep:
    """One AdamW step of every parameter in ``grads`` (differentiable in ``grads``; moments of the previous
    state are treated as constants)."""
    t = state.step + 1
    c1, c2 = 1 - cfg.beta1 ** t, 1 - cfg.beta2 ** t
    new, m_new, v_new, m_hats, v_hats = {}, {}, {}, {}, {}
    for name, g in grads.items():
        p = params[name]
        m = cfg.beta1 * state.m.get(name, torch.zeros_like(p)).detach() + (1 - cfg.beta1) * g
        v = cfg.beta2 * state.v.get(name, torch.zeros_like(p)).detach() + (1 - cfg.beta2) * g * g
        m_hat, v_hat = m / c1, v / c2
        live = v_hat > 0
        root = torch.sqrt(torch.where(live, v_hat, torch.ones_like(v_hat)))
        step = torch.where(live, m_hat / (root + cfg.eps), torch.zeros_like(m_hat))
        decay = cfg.weight_decay if decays(name, p) else 0.0
        new[name] = p * (1 - lr * decay) - lr * step
        m_new[name], v_new[name], m_hats[name], v_hats[name] = m, v, m_hat, v_hat
    return InnerStep(new, AdamWState(m_new, v_new, t), m_hats, v_hats)


def jacobian_diag(step: InnerStep, grads: Tensors, lr: float, cfg: AdamWConfig) -> Tensors:
    """d theta+ / d g for every coordinate (the closed form of the module docstring)."""
    t = step.state.step
    a = (1 - cfg.beta1) / (1 - cfg.beta1 ** t)
    b = (1 - cfg.beta2) / (1 - cfg.beta2 ** t)
    out = {}
    for name, g in grads.items():
        m_hat, v_hat = step.m_hat[name].detach(), step.v_hat[name].detach()
        live = v_hat > 0
        root = torch.sqrt(torch.where(live, v_hat, torch.ones_like(v_hat)))
        value = -lr * (a / (root + cfg.eps) - m_hat * b * g.detach() / (root * (root + cfg.eps) ** 2))
        out[name] = torch.where(live, value, torch.zeros_like(value))
    return out


def detach_state(state: AdamWState) -> AdamWState:
    return AdamWState({k: v.detach() for k, v in state.m.items()}, {k: v.detach() for k, v in state.v.items()},
                      state.step)
