"""A seeded sample shuffle for open_clip_train's webdataset loader (subset mode).

``open_clip_train.data.get_wds_dataset`` shuffles samples with ``wds.shuffle(bufsize, initial)`` and no seed;
webdataset then seeds its generator from the process id and the clock, so the same subset-mode training gave
other weights on every run (the shard order, ``detshuffle2``, is seeded; the sample buffer was not).
:func:`seed_sample_shuffle` changes only that module's view of webdataset: its ``shuffle`` becomes
:class:`EpochSeededShuffle`, seeded from the dataloader worker's seed and the epoch.  Classes live at module
level so that a spawned dataloader worker (macOS, Windows) can unpickle the pipeline.
"""

from __future__ import annotations

import random
from typing import Any

import open_clip_train.data as oc_data
import webdataset
from webdataset.filters import _shuffle


class RecordingSharedEpoch(oc_data.SharedEpoch):
    """open_clip_train's SharedEpoch, remembering the latest one made: the epoch of the dataset being built,
    whose sample shuffle is constructed right after it in ``get_wds_dataset``."""

    latest: RecordingSharedEpoch | None = None

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        RecordingSharedEpoch.latest = self


class EpochSeededShuffle(webdataset.PipelineStage):
    """webdataset's buffered sample shuffle with a generator seeded per dataloader worker and epoch.

    The seed is the worker's seed (torch derives it from the main process's generator, which open_clip_train
    seeds with ``--seed`` + rank) or, with no workers, the main process's initial seed; the epoch comes from the
    dataset's SharedEpoch, so every epoch shuffles differently.
    """

    def __init__(self, bufsize: int, initial: int, epoch: Any = None):
        self.bufsize, self.initial, self.epoch = bufsize, initial, epoch

    def run(self, src: Any) -> Any:
        import torch

        info = torch.utils.data.get_worker_info()
        base = info.seed if info is not None else torch.initial_seed()
        epoch = self.epoch.get_value() if self.epoch is not None else 0
        return _shuffle(src, self.bufsize, self.initial, random.Random(base * 1_000_003 + epoch))


class SeededWebdataset:
    """The webdataset module as ``open_clip_train.data`` sees it, with :class:`EpochSeededShuffle`."""

    def __init__(self, module: Any):
        self._module = module

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)

    def shuffle(self, bufsize: int = 1000, initial: int = 100, **kwargs: Any) -> Any:
        if kwargs:  # the caller chose an rng or a seed
            return self._module.shuffle(bufsize, initial, **kwargs)
        return EpochSeededShuffle(bufsize, initial, RecordingSharedEpoch.latest)


def seed_sample_shuffle(module: Any = oc_data) -> None:
    """Patch ``module`` (``open_clip_train.data``); idempotent."""
    if isinstance(module.wds, SeededWebdataset):
        return
    module.SharedEpoch = RecordingSharedEpoch
    module.wds = SeededWebdataset(module.wds)
