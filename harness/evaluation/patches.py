"""Fixes for known clip_benchmark 1.6.2 problems, applied at evaluation time (idempotent).

- ``metrics.zeroshot_classification.accuracy`` calls ``float()`` on a 1-element 1-D numpy array, which
  numpy >= 2.4 rejects (``TypeError: only 0-dimensional arrays can be converted``); still unfixed upstream.
  ``evaluate()`` looks the name up at call time, so replacing the module attribute fixes every caller.

Other traps are avoided where we call the library rather than patched: ``num_workers=0`` for the wds
loaders (a worker with no shard makes webdataset raise), ``amp`` only on CUDA (on CPU it means bf16), and
clip_benchmark's own ``zero_shot_classifier`` for ``{c}`` templates (open_clip's builder formats
positionally and raises ``KeyError: 'c'``).
"""

from __future__ import annotations


def topk_accuracy(output, target, topk=(1,)) -> list[float]:
    """Fraction of samples whose target is in the top-k logits, for each k (same contract as upstream)."""
    pred = output.topk(max(topk), 1, True, True)[1].t()
    correct = pred.eq(target.view(1, -1).expand_as(pred))
    n = len(target)
    return [correct[:k].reshape(-1).float().sum().item() / n for k in topk]


def apply_clip_benchmark_patches() -> None:
    """Install :func:`topk_accuracy` in place of clip_benchmark's broken ``accuracy``."""
    from clip_benchmark.metrics import zeroshot_classification

    if zeroshot_classification.accuracy is not topk_accuracy:
        zeroshot_classification.accuracy = topk_accuracy
