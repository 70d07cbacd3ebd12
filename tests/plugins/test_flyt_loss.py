"""FLYT's weighted CLIP loss: equal to open_clip's ClipLoss at uniform weights, its four properties, stability."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss

from filterbench.plugins.flyt.loss import classification_ce, clip_loss, weighted_clip_loss


def _batch(n: int = 7, d: int = 5, seed: int = 0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    image = F.normalize(torch.randn(n, d, generator=g, dtype=dtype), dim=1)
    text = F.normalize(image + 0.8 * torch.randn(n, d, generator=g, dtype=dtype), dim=1)
    return image, text


def test_uniform_weights_equal_open_clip_clip_loss():
    image, text = _batch()
    scale = torch.tensor(14.3, dtype=torch.float64)
    log_w = torch.log_softmax(torch.zeros(len(image), dtype=torch.float64), 0)
    expected = ClipLoss()(image, text, scale)
    torch.testing.assert_close(weighted_clip_loss(image, text, scale, log_w), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(clip_loss(image, text, scale), expected, rtol=1e-12, atol=1e-12)


def test_a_zero_weight_removes_its_example():
    image, text = _batch()
    scale = torch.tensor(20.0, dtype=torch.float64)
    w = torch.softmax(torch.randn(len(image), dtype=torch.float64), 0)
    w[3] = 0.0
    w = w / w.sum()
    keep = [i for i in range(len(image)) if i != 3]
    full = weighted_clip_loss(image, text, scale, w.log())
    removed = weighted_clip_loss(image[keep], text[keep], scale, w[keep].log())
    torch.testing.assert_close(full, removed, rtol=1e-12, atol=1e-12)


def _multi_positive_clip_loss(image, text, scale, owner):
    """CLIP loss of a batch with repeated examples, where copies of one example are positives of each other."""
    logits = scale * image @ text.T
    same = owner[:, None] == owner[None, :]

    def direction(lg):
        return (torch.logsumexp(lg, 1) - torch.logsumexp(lg.masked_fill(~same, -math.inf), 1)).mean()

    return (direction(logits) + direction(logits.T)) / 2


def test_integer_weights_act_as_multiplicities():
    image, text = _batch(n=5)
    counts = torch.tensor([1, 3, 2, 1, 4])
    scale = torch.tensor(9.0, dtype=torch.float64)
    w = counts.double() / counts.sum()
    owner = torch.repeat_interleave(torch.arange(5), counts)
    expected = _multi_positive_clip_loss(image[owner], text[owner], scale, owner)
    torch.testing.assert_close(weighted_clip_loss(image, text, scale, w.log()), expected, rtol=1e-12, atol=1e-12)


def test_all_weight_on_one_example_gives_zero_loss():
    image, text = _batch()
    scale = torch.tensor(50.0, dtype=torch.float64)
    scores = torch.zeros(len(image), dtype=torch.float64)
    scores[2] = 1e4  # softmax puts (numerically) all the weight on example 2
    loss = weighted_clip_loss(image, text, scale, torch.log_softmax(scores, 0))
    assert abs(float(loss)) < 1e-12
    one_hot = torch.full((len(image),), -math.inf, dtype=torch.float64)
    one_hot[2] = 0.0
    assert float(weighted_clip_loss(image, text, scale, one_hot)) == 0.0


def test_no_overflow_at_logit_scale_100_with_cosines_near_one():
    base = F.normalize(torch.ones(6, 8), dim=1)
    image = F.normalize(base + 1e-3 * torch.randn(6, 8, generator=torch.Generator().manual_seed(1)), dim=1)
    text = F.normalize(base + 1e-3 * torch.randn(6, 8, generator=torch.Generator().manual_seed(2)), dim=1)
    assert float((image @ text.T).min()) > 0.999
    scale = torch.tensor(100.0, requires_grad=True)
    scores = torch.randn(6, requires_grad=True)
    assert torch.isinf(torch.exp(scale.detach() * image @ text.T)).all()  # what a raw exp would do in fp32
    image.requires_grad_(True)
    loss = weighted_clip_loss(image, text, scale, torch.log_softmax(scores, 0))
    loss.backward()
    reference = weighted_clip_loss(image.double(), text.double(), scale.double(),
                                   torch.log_softmax(scores.double(), 0))
    assert torch.isfinite(loss) and abs(float(loss.detach()) - float(reference.detach())) < 1e-4
    assert torch.isfinite(scores.grad).all() and torch.isfinite(image.grad).all() and torch.isfinite(scale.grad)


def test_classification_ce_matches_cross_entropy_on_logits():
    image, _ = _batch(n=6)
    classes = F.normalize(torch.randn(3, 5, dtype=torch.float64), dim=1)
    labels = torch.tensor([0, 1, 2, 2, 1, 0])
    expected = F.cross_entropy(2.5 * image @ classes.T, labels)
    torch.testing.assert_close(classification_ce(image, classes, labels, 2.5), expected)
    with pytest.raises(Exception):
        classification_ce(image, classes, torch.tensor([0, 1, 2, 3, 1, 0]))  # label outside the classes
