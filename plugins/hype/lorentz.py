"""The Lorentz (hyperboloid) model of hyperbolic space with curvature -c, as MERU and HYPE use it.

A point is stored by its space component ``x_s`` (the last ``D`` coordinates); its time component is implied,
``x_t = sqrt(1/c + |x_s|^2)``, which puts it on the upper sheet of ``<x, x>_L = -1/c``.  Models produce
*tangent vectors at the origin* ``v``; :func:`expmap0` lifts them.  Every function takes tangent vectors or
space components as documented, computes in float32 at least (float64 stays float64) with autocast off,
and is written to stay finite and accurate where the textbook formulas are not:

- near the origin: ``sinh(z)/z`` uses its series below ``z = 1e-3`` (no 0/0, finite gradients at v = 0);
- distances come from the chord ``q = <x - y, x - y>_L = |x_s - y_s|^2 - (x_t - y_t)^2``, with
  ``x_t - y_t = (|x_s|^2 - |y_s|^2) / (x_t + y_t)``, and ``d = 2/sqrt(c) * asinh(sqrt(c q) / 2)``.  This is
  the same distance as ``acosh(-c <x, y>_L) / sqrt(c)`` but without the cancellation of two large,
  nearly equal terms: a point's distance to itself is 0 (1e-10) at any norm, and nearby points near the
  origin keep their relative accuracy (the acosh form loses all digits below d ~ 3e-4 in float32);
- large norms: the sinh argument is clamped at ``asinh(2^15)`` (MERU's clamp), so nothing overflows.

Formulas (scorers.md section 3.1): half-aperture ``aper(x) = asin(clamp(2K / (sqrt(c) |x_s|), -1+e, 1-e))``
with ``K = 0.1``; exterior angle at x of the triangle (origin, x, y)
``ext(x, y) = acos((y_t + c x_t <x, y>_L) / (|x_s| sqrt((c <x, y>_L)^2 - 1)))``, written through ``q``
(``-c <x, y>_L = 1 + c q / 2`` and ``sqrt((c <x, y>_L)^2 - 1) = sqrt(c q) sqrt(1 + c q / 4)``).
"""

from __future__ import annotations

import math

import torch

#: MERU's clamp of the exponential map's sinh argument (keeps x in float32 range for any input norm)
SINH_CLAMP = math.asinh(2.0 ** 15)
#: entailment cone constant ("min radius") of MERU and HYPE
CONE_K = 0.1
EPS = 1e-7
_SERIES_BELOW = 1e-3
#: floor of the squared chord: keeps sqrt's gradient finite for coincident points (d <= 1e-10 there)
CHORD_FLOOR = 1e-20


def _wide(*tensors):
    """Tensors as float32 (or float64 if any is float64), for maths with autocast off."""
    dtype = torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32
    return [t.to(dtype) for t in tensors]


def expmap0(v: torch.Tensor, c: torch.Tensor | float) -> torch.Tensor:
    """Space component of the exponential map at the origin: ``sinh(sqrt(c)|v|) v / (sqrt(c)|v|)``."""
    with torch.autocast(device_type=v.device.type, enabled=False):
        (v,) = _wide(v)
        c = torch.as_tensor(c, dtype=v.dtype, device=v.device)
        z = c.sqrt() * v.norm(dim=-1, keepdim=True)
        safe = z.clamp(min=_SERIES_BELOW)
        factor = torch.where(z < _SERIES_BELOW, 1 + z * z / 6, torch.sinh(safe.clamp(max=SINH_CLAMP)) / safe)
        return factor * v


def time_of(x_s: torch.Tensor, c: torch.Tensor | float) -> torch.Tensor:
    """Time component ``sqrt(1/c + |x_s|^2)`` of points given by their space components."""
    c = torch.as_tensor(c, dtype=x_s.dtype, device=x_s.device)
    return torch.sqrt(1 / c + (x_s * x_s).sum(-1))


def _chord(x_s, y_s, x_t, y_t):
    """Row-wise ``<x - y, x - y>_L`` computed without cancellation, floored at :data:`CHORD_FLOOR`."""
    diff = x_s - y_s
    dt = ((x_s + y_s) * diff).sum(-1) / (x_t + y_t)
    return (diff * diff).sum(-1).sub(dt * dt).clamp(min=CHORD_FLOOR)


def _from_chord(q, c):
    return 2 / c.sqrt() * torch.asinh(c.sqrt() * q.sqrt() / 2)


def distance(v: torch.Tensor, w: torch.Tensor, c: torch.Tensor | float) -> torch.Tensor:
    """Row-wise geodesic distance between the lifts of tangent vectors ``v`` and ``w``."""
    with torch.autocast(device_type=v.device.type, enabled=False):
        v, w = _wide(v, w)
        c = torch.as_tensor(c, dtype=v.dtype, device=v.device)
        x_s, y_s = expmap0(v, c), expmap0(w, c)
        return _from_chord(_chord(x_s, y_s, time_of(x_s, c), time_of(y_s, c)), c)


def half_aperture(x_s: torch.Tensor, c: torch.Tensor | float, k: float = CONE_K) -> torch.Tensor:
    """Half-aperture of the entailment cone at points with space components ``x_s``."""
    c = torch.as_tensor(c, dtype=x_s.dtype, device=x_s.device)
    ratio = 2 * k / (c.sqrt() * x_s.norm(dim=-1)).clamp(min=EPS)
    return torch.asin(ratio.clamp(-1 + EPS, 1 - EPS))


def _exterior_from(q, dt, x_norm, x_t, c):
    """Exterior angle at x from the chord ``q``, ``dt = y_t - x_t``, ``|x_s|`` and ``x_t``."""
    numerator = dt - c * x_t * q / 2  # = y_t + c x_t <x, y>_L
    denominator = x_norm * (c * q).sqrt() * torch.sqrt(1 + c * q / 4)
    return torch.acos((numerator / denominator.clamp(min=EPS)).clamp(-1 + EPS, 1 - EPS))


def exterior_angle(v: torch.Tensor, w: torch.Tensor, c: torch.Tensor | float) -> torch.Tensor:
    """Row-wise exterior angle at x = lift(v) of the triangle (origin, x, y = lift(w))."""
    with torch.autocast(device_type=v.device.type, enabled=False):
        v, w = _wide(v, w)
        c = torch.as_tensor(c, dtype=v.dtype, device=v.device)
        x_s, y_s = expmap0(v, c), expmap0(w, c)
        x_t, y_t = time_of(x_s, c), time_of(y_s, c)
        dt = ((y_s + x_s) * (y_s - x_s)).sum(-1) / (x_t + y_t)  # y_t - x_t, without cancellation
        return _exterior_from(_chord(x_s, y_s, x_t, y_t), dt, x_s.norm(dim=-1), x_t, c)


def _pairwise(v: torch.Tensor, w: torch.Tensor, c):
    """Everything the pairwise functions need, for rows of v (i) against rows of w (j): the chord q_ij (from
    the Gram matrix, one matmul), dt_ij = y_t_j - x_t_i (without cancellation), |x_s_i|, x_t_i and c."""
    v, w = _wide(v, w)
    c = torch.as_tensor(c, dtype=v.dtype, device=v.device)
    x_s, y_s = expmap0(v, c), expmap0(w, c)
    x_sq, y_sq = (x_s * x_s).sum(-1), (y_s * y_s).sum(-1)
    x_t, y_t = torch.sqrt(1 / c + x_sq), torch.sqrt(1 / c + y_sq)
    dt = (y_sq[None] - x_sq[:, None]) / (x_t[:, None] + y_t[None])
    space = (x_sq[:, None] + y_sq[None] - 2 * x_s @ y_s.T).clamp(min=0)
    q = (space - dt * dt).clamp(min=CHORD_FLOOR)
    return q, dt, x_sq.sqrt()[:, None], x_t[:, None], c


def pairwise_distance(v: torch.Tensor, w: torch.Tensor, c: torch.Tensor | float) -> torch.Tensor:
    """Distances between every lift of ``v`` (rows) and every lift of ``w`` (columns).

    The space part of the chord comes from the Gram matrix, so pairs of nearly coincident points carry an
    absolute error of about sqrt(eps) |x_s| (float32: 3e-4 |x_s|); use :func:`distance` for such pairs.
    """
    with torch.autocast(device_type=v.device.type, enabled=False):
        q, _, _, _, c = _pairwise(v, w, c)
        return _from_chord(q, c)


def pairwise_exterior_angle(v: torch.Tensor, w: torch.Tensor, c: torch.Tensor | float) -> torch.Tensor:
    """Exterior angle at each lift of ``v`` (rows, the cone apices) towards each lift of ``w`` (columns)."""
    with torch.autocast(device_type=v.device.type, enabled=False):
        return _exterior_from(*_pairwise(v, w, c))


def entailment(parent: torch.Tensor, child: torch.Tensor, c: torch.Tensor | float) -> torch.Tensor:
    """HYPE's ``E(x, y) = ext(x, y) - aper(x)`` for every (parent row, child row) pair, unclamped."""
    with torch.autocast(device_type=parent.device.type, enabled=False):
        (p,) = _wide(parent)
        aper = half_aperture(expmap0(p, c), torch.as_tensor(c, dtype=p.dtype, device=p.device))
        return pairwise_exterior_angle(parent, child, c) - aper[:, None]


def entailment_loss(text: torch.Tensor, image: torch.Tensor, c: torch.Tensor | float) -> torch.Tensor:
    """MERU's entailment loss: mean over pairs of ``max(0, ext(text, image) - aper(text))`` (text is the
    parent of its paired image)."""
    with torch.autocast(device_type=text.device.type, enabled=False):
        t, i = _wide(text, image)
        c = torch.as_tensor(c, dtype=t.dtype, device=t.device)
        x_s = expmap0(t, c)
        gap = exterior_angle(t, i, c) - half_aperture(x_s, c)
        return gap.clamp(min=0).mean()
