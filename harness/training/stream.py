"""The planned loader of the multiset and schedule modes: segment ``e``'s shards, read once, in epoch ``e``.

open_clip_train's own webdataset loader either resamples (DataComp's subset mode) or, without resampling,
reshuffles and re-reads the whole shard list every epoch and rounds each worker's share up by repeating samples;
neither feeds a multiset exactly.  This loader replaces only the data side: the launcher hands open_clip_train a
``DataInfo`` whose dataloader yields, in epoch ``e``, the global batches of segment ``e`` in planned order:

- global batch ``k`` is positions ``[k*G, (k+1)*G)`` of the segment's order; rank ``r`` takes
  ``[k*G + r*b, k*G + (r+1)*b)`` with ``b = G / world_size`` (so the batch composition does not depend on the
  number of processes);
- dataloader worker ``j`` of ``J`` produces local batches ``k = j, j+J, ...``; torch's in-order multi-worker
  iteration then returns them as ``0, 1, 2, ...``;
- a sample is decoded exactly like open_clip's pipeline (PIL RGB, ``preprocess_train``, the model's tokenizer).

Batches are ``(images, texts, uids)``; :class:`~filterbench.harness.training.feed.FeedMeter` strips the uids
before open_clip's training step sees the batch (and records them when fed-uid counting is on).
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filterbench.harness.training import tarformat
from filterbench.harness.training.tarindex import IMAGE_EXTS, TEXT_EXT
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

log = logging.getLogger("filterbench.train")


class PlannedSegments(IterableDataset):
    """Yield this rank's batches of the current epoch's segment (the epoch comes from open_clip's SharedEpoch).

    Args:
        data_dir: the folder holding ``layout.json`` and the ``segNNN/`` shard folders.
        layout: the resharder's layout.
        batches: batches per segment (micro-batches with gradient accumulation).
        global_batch, rank, world_size: samples per batch over all processes, and their split.
        shared_epoch: open_clip_train's ``SharedEpoch`` (set by ``DataInfo.set_epoch`` before each epoch).
        preprocess: open_clip's train transform; ``tokenizer``: the model's tokenizer.
    """

    def __init__(self, data_dir: Path, layout: dict, batches: int, global_batch: int, rank: int, world_size: int,
                 shared_epoch: Any, preprocess: Callable, tokenizer: Callable):
        super().__init__()
        self.data_dir, self.layout, self.batches = Path(data_dir), layout, batches
        self.global_batch, self.rank, self.local_batch = global_batch, rank, global_batch // world_size
        self.shared_epoch, self.preprocess, self.tokenizer = shared_epoch, preprocess, tokenizer
        self._fds: dict[Path, int] = {}
        self._offsets: dict[Path, np.ndarray] = {}

    def __iter__(self):
        segment = self.layout["segments"][self.shared_epoch.get_value()]
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for k in range(worker, self.batches, workers):
            start = k * self.global_batch + self.rank * self.local_batch
            yield self._batch(self._read(segment, start, self.local_batch))

    # -- reading -----------------------------------------------------------------------------------------------
    def _read(self, segment: dict, start: int, count: int) -> list[dict[str, bytes]]:
        """Samples ``[start, start+count)`` of a segment, crossing shard boundaries as needed."""
        samples: list[dict[str, bytes]] = []
        base = 0
        for shard in segment["shards"]:
            lo, hi = max(start, base), min(start + count, base + shard["samples"])
            if lo < hi:
                samples += self._read_shard(self.data_dir / segment["dir"] / shard["name"], lo - base, hi - base)
            base += shard["samples"]
            if base >= start + count:
                break
        if len(samples) != count:
            raise RuntimeError(f"planned loader: read {len(samples)} samples at {start} of {segment['dir']}, "
                               f"expected {count} (damaged shards?)")
        return samples

    def _read_shard(self, path: Path, first: int, last: int) -> list[dict[str, bytes]]:
        offsets = self._offsets.get(path)
        if offsets is None:
            offsets = self._offsets[path] = np.load(str(path)[: -len(".tar")] + ".idx.npy")
            self._fds[path] = os.open(path, os.O_RDONLY)
        lo, hi = int(offsets[first]), int(offsets[last])
        raw = os.pread(self._fds[path], hi - lo, lo)
        samples: list[dict[str, bytes]] = []
        for name, offset, size in tarformat.scan(io.BytesIO(raw)):
            key, _, ext = name.partition(".")
            if not samples or samples[-1]["__key__"] != key:
                samples.append({"__key__": key})
            samples[-1][ext.lower()] = raw[offset:offset + size]
        return samples

    # -- decoding ----------------------------------------------------------------------------------------------
    def _batch(self, samples: list[dict[str, bytes]]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        from PIL import Image

        images, texts, uids = [], [], []
        for sample in samples:
            raw = next((sample[e] for e in IMAGE_EXTS if e in sample), None)
            try:
                image = Image.open(io.BytesIO(raw)).convert("RGB")
            except Exception as exc:  # keep the batch full: repeat the previous image, and say so
                if not images:
                    raise RuntimeError(f"planned loader: undecodable image {sample['__key__']}: {exc}") from exc
                log.warning("planned loader: undecodable image %s (%s); repeating the previous sample",
                            sample["__key__"], exc)
                images.append(images[-1])
                texts.append(texts[-1])
                uids.append(uids[-1])
                continue
            images.append(self.preprocess(image))
            texts.append(sample.get(TEXT_EXT, b"").decode("utf-8", errors="replace"))
            uids.append(_uid(sample))
        return torch.stack(images), self.tokenizer(texts), uids

    def __del__(self) -> None:
        for fd in self._fds.values():
            try:
                os.close(fd)
            except OSError:
                pass


def _uid(sample: dict[str, bytes]) -> str:
    """The uid in the sample's own ``.json`` (the pool's record), falling back to the ``<uid>-<j>`` key."""
    try:
        return json.loads(sample["json"])["uid"]
    except (KeyError, ValueError, TypeError):
        return sample["__key__"].rsplit("-", 1)[0]


def planned_data_info(args: Any, preprocess_train: Callable, tokenizer: Callable, data_dir: Path, layout: dict,
                      batches: int, epoch: int = 0) -> Any:
    """open_clip_train's ``DataInfo`` for the planned loader (same DataLoader settings as its webdataset path)."""
    from open_clip_train.data import DataInfo, SharedEpoch

    # with gradient accumulation an optimizer step takes accum_freq consecutive (micro) batches of every rank,
    # i.e. one planned global batch cut into accum_freq contiguous slices
    micro_steps = batches * args.accum_freq
    micro_batch = args.batch_size * args.world_size
    shared_epoch = SharedEpoch(epoch=epoch)
    dataset = PlannedSegments(data_dir, layout, micro_steps, micro_batch, args.rank, args.world_size, shared_epoch,
                              preprocess_train, tokenizer)
    loader = DataLoader(dataset, batch_size=None, shuffle=False, num_workers=args.workers,
                        persistent_workers=args.workers > 0)
    loader.num_batches = micro_steps
    loader.num_samples = micro_steps * micro_batch
    if loader.num_samples != layout["segments"][0]["samples"]:
        raise RuntimeError(f"planned loader: {micro_steps} batches of {micro_batch} do not cover a segment of "
                           f"{layout['segments'][0]['samples']} samples (batch size or world size changed?)")
    return DataInfo(dataloader=loader, shared_epoch=shared_epoch)
