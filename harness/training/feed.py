"""What the training step is actually fed: per-epoch timing always, per-uid records when asked.

:class:`FeedMeter` wraps the train dataloader that open_clip_train's ``train_one_epoch`` iterates.  It hands the
step ``(images, texts)`` exactly as before and, for every batch it hands over, can append the batch's uids to
``fed/rank<r>-epoch<e>.uids`` (raw ``u8,u8`` pairs).  The uids come from the samples' own ``.json``: for the
planned modes the loader carries them; for the subset mode (open_clip's own webdataset pipeline) the
``json`` column is added to the pipeline's final ``to_tuple`` while the loader is built
(:func:`uids_in_wds_batches`).  Each epoch's file is rewritten from the start, so a resumed epoch is not
counted twice.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from filterbench.harness.uids import UID_DTYPE, hex_to_pairs


class TrainingInterrupted(RuntimeError):
    """Raised at the start of an epoch when the launch spec asks to stop there (tests of resume)."""


class FeedMeter:
    """Wrap a train dataloader: strip the uid column, time each epoch, optionally record fed uids.

    Args:
        inner: the dataloader (with open_clip's ``num_batches``/``num_samples`` attributes).
        shared_epoch: open_clip's SharedEpoch, read when an epoch starts.
        rank: this process's global rank (names the record file).
        fed_dir: where to write fed uids, or None.
        stop_at_epoch: raise :class:`TrainingInterrupted` when this epoch would start (None: never).
        progress: called as ``progress(epoch, batches per epoch)`` after each batch is fed, or None.
    """

    def __init__(self, inner: Any, shared_epoch: Any, rank: int, fed_dir: Path | None = None,
                 stop_at_epoch: int | None = None, progress: Any = None):
        self.inner, self.shared_epoch, self.rank = inner, shared_epoch, rank
        self.progress = progress
        self.fed_dir = Path(fed_dir) if fed_dir else None
        self.stop_at_epoch = stop_at_epoch
        self.num_batches, self.num_samples = inner.num_batches, inner.num_samples
        self.epochs: list[dict] = []

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        epoch = self.shared_epoch.get_value()
        if self.stop_at_epoch is not None and epoch >= self.stop_at_epoch:
            raise TrainingInterrupted(f"stopping before epoch {epoch} as the launch spec asks")
        batches = samples = 0
        start = time.perf_counter()
        with contextlib.ExitStack() as stack:
            record = stack.enter_context(open(self.fed_dir / f"rank{self.rank}-epoch{epoch:03d}.uids", "wb")) \
                if self.fed_dir else None
            for batch in self.inner:
                images, texts = batch[0], batch[1]
                if record is not None:
                    record.write(_uid_pairs(batch).tobytes())
                batches += 1
                samples += len(images)
                if self.progress is not None:
                    self.progress(epoch, self.num_batches)
                yield images, texts
        self.epochs.append({"epoch": epoch, "batches": batches, "samples": samples,
                            "wall_s": round(time.perf_counter() - start, 3)})


def _uid_pairs(batch: Any) -> np.ndarray:
    if len(batch) < 3:
        raise RuntimeError("fed-uid counting is on but the loader's batches carry no uids")
    uids = [u["uid"] if isinstance(u, dict) else u for u in batch[2]]
    return hex_to_pairs(uids, where="fed batch")


@contextlib.contextmanager
def uids_in_wds_batches() -> Iterator[None]:
    """While open_clip_train builds its webdataset loader, make the final ``to_tuple("image", "text")`` also
    return the decoded ``json`` (where the uid lives).  Only the pipeline built inside the block changes."""
    import webdataset

    original = webdataset.to_tuple

    def to_tuple(*keys: str, **kwargs: Any) -> Any:
        if keys == ("image", "text"):
            keys = ("image", "text", "json")
        return original(*keys, **kwargs)

    webdataset.to_tuple = to_tuple
    try:
        yield
    finally:
        webdataset.to_tuple = original


def read_fed(fed_dir: Path) -> dict[int, np.ndarray]:
    """Fed uids per epoch (all ranks together), as ``u8,u8`` arrays."""
    epochs: dict[int, list[np.ndarray]] = {}
    for path in sorted(Path(fed_dir).glob("rank*-epoch*.uids")):
        epoch = int(path.stem.rsplit("epoch", 1)[1])
        epochs.setdefault(epoch, []).append(np.fromfile(path, dtype=UID_DTYPE))
    return {e: np.concatenate(parts) for e, parts in sorted(epochs.items())}


def fed_counts(fed_dir: Path, pool_uids: np.ndarray) -> tuple[np.ndarray, int]:
    """How often each pool uid was fed, per epoch: (epochs x pool) uint32, and how many fed uids are not in
    the pool at all (must be 0)."""
    order = np.argsort(pool_uids, kind="stable")
    ordered = pool_uids[order]
    per_epoch = read_fed(fed_dir)
    counts = np.zeros((max(per_epoch, default=-1) + 1, pool_uids.size), dtype=np.uint32)
    strangers = 0
    for epoch, uids in per_epoch.items():
        pos = np.minimum(np.searchsorted(ordered, uids), max(ordered.size - 1, 0))
        known = ordered[pos] == uids if ordered.size else np.zeros(uids.size, bool)
        strangers += int(np.count_nonzero(~known))
        counts[epoch] = np.bincount(order[pos[known]], minlength=pool_uids.size)
    return counts, strangers
