"""Lorentz-model operations (plugins/hype/lorentz.py) against independent closed forms and known values.

The closed forms used here never touch the hyperboloid: the exponential map at the origin sends v to the point
at geodesic distance |v| from the origin in direction v, so two points are given by radii r1, r2 and the angle
theta between their directions, and the hyperbolic law of cosines (curvature -c, with s = sqrt(c))
    cosh(s d) = cosh(s r1) cosh(s r2) - sinh(s r1) sinh(s r2) cos(theta)
gives their distance, and the interior angle at x of the triangle (origin, x, y) from its three sides; the
exterior angle is pi minus it.  Everything is compared in float64, and the float32 results against them.
"""

from __future__ import annotations

import math

import pytest
import torch

from filterbench.plugins.hype import lorentz as L

C = 0.7
S = math.sqrt(C)


def _closed_distance(v: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    r1, r2 = v.double().norm(dim=-1), w.double().norm(dim=-1)
    cos = (v.double() * w.double()).sum(-1) / (r1 * r2)
    arg = torch.cosh(S * r1) * torch.cosh(S * r2) - torch.sinh(S * r1) * torch.sinh(S * r2) * cos
    return torch.acosh(arg.clamp(min=1)) / S


def _closed_exterior(v: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    a, b, opposite = v.double().norm(dim=-1), _closed_distance(v, w), w.double().norm(dim=-1)
    cos_interior = (torch.cosh(S * a) * torch.cosh(S * b) - torch.cosh(S * opposite)) / \
        (torch.sinh(S * a) * torch.sinh(S * b))
    return math.pi - torch.acos(cos_interior.clamp(-1, 1))


def _pairs(n: int, dim: int, radius: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(n, dim, generator=g, dtype=torch.float64)
    w = torch.randn(n, dim, generator=g, dtype=torch.float64)
    radii = radius * (0.5 + torch.rand(n, 2, generator=g, dtype=torch.float64))
    return v / v.norm(dim=-1, keepdim=True) * radii[:, :1], w / w.norm(dim=-1, keepdim=True) * radii[:, 1:]


def test_exp_map_lands_on_the_hyperboloid_at_the_right_distance_and_direction():
    v, _ = _pairs(64, 8, 1.5, 0)
    x_s = L.expmap0(v, C)
    x_t = L.time_of(x_s, C)
    torch.testing.assert_close((x_s * x_s).sum(-1) - x_t * x_t, torch.full((64,), -1 / C, dtype=torch.float64))
    torch.testing.assert_close(x_s.norm(dim=-1), torch.sinh(S * v.norm(dim=-1)) / S)  # radius |v|
    torch.testing.assert_close(x_t, torch.cosh(S * v.norm(dim=-1)) / S)
    torch.testing.assert_close(x_s / x_s.norm(dim=-1, keepdim=True), v / v.norm(dim=-1, keepdim=True))
    origin = torch.zeros(1, 8, dtype=torch.float64)
    assert L.expmap0(origin, C).abs().max() == 0 and float(L.time_of(origin, C)) == pytest.approx(1 / S)
    torch.testing.assert_close(L.distance(origin.expand(64, 8), v, C), v.norm(dim=-1))


@pytest.mark.parametrize("radius", [1e-4, 1e-2, 0.5, 2.0, 6.0])
def test_distance_matches_the_law_of_cosines_in_float64_and_float32(radius):
    v, w = _pairs(200, 16, radius, 1)
    expected = _closed_distance(v, w)  # its acosh(1 + tiny) carries ~1e-8 relative error at radius 1e-4
    torch.testing.assert_close(L.distance(v, w, C), expected, rtol=1e-7, atol=0)
    got32 = L.distance(v.float(), w.float(), C).double()
    assert ((got32 - expected).abs() / expected).max() < 2e-5
    torch.testing.assert_close(L.distance(v, w, C), L.distance(w, v, C))  # symmetric


def test_pairwise_distance_matches_row_wise_and_symmetric_points():
    v, w = _pairs(30, 8, 1.0, 2)
    pairwise = L.pairwise_distance(v, w, C)
    torch.testing.assert_close(pairwise.diagonal(), L.distance(v, w, C))
    torch.testing.assert_close(pairwise, L.pairwise_distance(w, v, C).T)
    mirrored = v.clone()
    mirrored[:, 0] = -mirrored[:, 0]  # reflection through a hyperplane: an isometry fixing the origin
    torch.testing.assert_close(L.distance(v, w, C), L.distance(mirrored, torch.cat([-w[:, :1], w[:, 1:]], 1), C))
    opposite = L.distance(v, -v, C)  # antipodal directions: the geodesic passes through the origin
    torch.testing.assert_close(opposite, 2 * v.norm(dim=-1))


def test_float32_near_the_origin_keeps_relative_accuracy_where_the_acosh_form_fails():
    v, w = _pairs(100, 16, 1e-5, 3)
    expected = _closed_distance(v, w)
    got = L.distance(v.float(), w.float(), C).double()
    assert ((got - expected).abs() / expected).max() < 1e-4
    # the textbook form acosh(-c <x, y>_L) / sqrt(c) in float32 rounds the argument to 1: distance 0
    x_s, y_s = L.expmap0(v.float(), C), L.expmap0(w.float(), C)
    inner = (x_s * y_s).sum(-1) - L.time_of(x_s, C) * L.time_of(y_s, C)
    naive = torch.acosh((-C * inner).clamp(min=1)) / S
    assert ((naive.double() - expected).abs() / expected).max() > 0.5
    zero = torch.zeros(4, 16, requires_grad=True)  # finite gradients at the origin
    L.distance(zero, torch.ones(4, 16) * 0.1, C).sum().backward()
    assert torch.isfinite(zero.grad).all()


@pytest.mark.parametrize("radius", [8.0, 12.0])
def test_float32_at_large_norms_stays_accurate_and_finite(radius):
    v, w = _pairs(100, 16, radius / 1.5, 4)  # s*|v| up to 10.2, below the sinh clamp asinh(2^15) = 11.09
    expected = _closed_distance(v, w)
    got = L.distance(v.float(), w.float(), C).double()
    assert ((got - expected).abs() / expected).max() < 1e-4
    assert L.distance(v.float(), v.float(), C).max() < 1e-9  # a point's distance to itself, at x_t ~ 1e4
    huge = torch.randn(8, 16) * 1e6  # far beyond the clamp: lifted to the clamp radius, never inf or NaN
    for value in (L.expmap0(huge, C), L.distance(huge, -huge, C), L.exterior_angle(huge, huge.flip(0), C),
                  L.half_aperture(L.expmap0(huge, C), C)):
        assert torch.isfinite(value).all()
    assert float(L.expmap0(huge, C).norm(dim=-1).max()) == pytest.approx(2 ** 15 / S, rel=1e-4)


def test_exterior_angle_matches_the_triangle_and_known_configurations():
    v, w = _pairs(100, 8, 1.2, 5)
    expected = _closed_exterior(v, w)
    torch.testing.assert_close(L.exterior_angle(v, w, C), expected, rtol=0, atol=1e-9)
    assert (L.exterior_angle(v.float(), w.float(), C).double() - expected).abs().max() < 1e-4
    torch.testing.assert_close(L.pairwise_exterior_angle(v, w, C).diagonal(), L.exterior_angle(v, w, C))
    direction = v / v.norm(dim=-1, keepdim=True)
    beyond = L.exterior_angle(direction * 1.0, direction * 2.0, C)  # y further out on x's ray: angle 0
    before = L.exterior_angle(direction * 2.0, direction * 1.0, C)  # y between the origin and x: angle pi
    at_origin = L.exterior_angle(direction, torch.zeros_like(direction), C)
    assert beyond.max() < 2e-3 and (before - math.pi).abs().max() < 2e-3 and (at_origin - math.pi).abs().max() < 2e-3


def test_half_aperture_known_values_and_limits():
    radius_of = lambda r: torch.tensor([[math.sinh(S * r) / S, 0.0]], dtype=torch.float64)  # noqa: E731
    for r in (0.5, 1.0, 3.0):
        x_s = radius_of(r)
        expected = math.asin(min(1.0, 2 * L.CONE_K / (S * float(x_s.norm()))))
        assert float(L.half_aperture(x_s, C)) == pytest.approx(expected, abs=1e-6)
    near = L.half_aperture(torch.tensor([[1e-9, 0.0]]), C)  # at the origin the cone is a half-space
    assert float(near) == pytest.approx(math.pi / 2, abs=1e-3)
    far = L.half_aperture(radius_of(30.0), C)
    assert 0 < float(far) < 1e-8


def test_entailment_is_exterior_minus_aperture_and_the_loss_clamps_at_zero():
    v, w = _pairs(6, 8, 1.0, 6)
    e = L.entailment(v, w, C)
    expected = L.pairwise_exterior_angle(v, w, C) - L.half_aperture(L.expmap0(v, C), C)[:, None]
    torch.testing.assert_close(e, expected)
    # a generic parent near the origin covers a child further out on its ray; its loss term is 0
    direction = v / v.norm(dim=-1, keepdim=True)
    assert float(L.entailment_loss(direction * 0.05, direction * 2.0, C)) == 0.0
    far_child = L.entailment_loss(direction * 2.0, -direction * 2.0, C)
    assert float(far_child) == pytest.approx(float((math.pi - L.half_aperture(L.expmap0(direction * 2.0, C), C))
                                                   .mean()), abs=1e-3)
