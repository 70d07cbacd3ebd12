"""Global steps as map + small reduce: order statistics, top-k and threshold cuts over score parts.

A score column lives in one parquet part per metadata shard.  Nothing here loads a whole column: a *pass* maps
a small :class:`PartPass` task over the parts on any executor, each unit returns a sparse sketch of its part,
and the driver merges the sketches as they arrive (sums of counts: independent of arrival order).

Order keys map float32 scores to uint32 with the same order (NaN -> 0, below everything; -0.0 just below
+0.0), so "the k-th largest score" is a radix select on keys: a histogram of the high 16 bits finds the bin,
a histogram of the low 16 bits inside that bin finds the key.  Two passes, exact, whatever the pool size.

A top-k cut keeps exactly k uids: every key above the k-th largest key K, and among the rows whose key is K
(the ties) the ones with the smallest 128-bit uids.  Only the ties' positions reach the driver, and their uids
are read from the pool's ``uids.npy`` by position.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import pyarrow.parquet as pq

from filterbench.harness.executor import Executor, Task

BINS = 65536


def order_keys(values: np.ndarray) -> np.ndarray:
    """float32 scores -> uint32 keys with the same order (NaN -> 0, below everything)."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    keys = np.where(bits >> 31, ~bits, bits | np.uint32(0x80000000)).astype(np.uint32)
    keys[np.isnan(values)] = 0
    return keys


def key_value(key: int) -> float:
    """The float32 score whose order key is ``key`` (inverse of :func:`order_keys` for non-NaN keys)."""
    bits = np.uint32(key & 0x7FFFFFFF) if key & 0x80000000 else ~np.uint32(key)
    return float(np.array([bits], dtype=np.uint32).view(np.float32)[0])


@dataclass(frozen=True)
class Part:
    """One unit of a pass: a score part and where its rows sit in pool order."""

    stem: str
    offset: int
    rows: int


def parts_of(manifest: dict) -> list[Part]:
    """The parts of a score artifact, with offsets, from its manifest (rows per part are recorded there)."""
    parts, offset = [], 0
    for stem in manifest["parts"]:
        rows = int(manifest["outputs"][f"parts/{stem}.parquet"]["rows"])
        parts.append(Part(stem, offset, rows))
        offset += rows
    return parts


@dataclass
class PartPass(Task):
    """Read one column of one part and return a sketch of it (``mode``):

    - ``hist``: (high 16 bits present, their counts) of the order keys, and the number of NaN rows;
    - ``lo``: for each high bin in ``arg``, (low 16 bits present, counts);
    - ``select``: keys ``> arg`` as a 0/1 uint8 mask, and the part-local positions of keys ``== arg``;
    - ``threshold``: scores ``>= arg`` as a 0/1 uint8 mask (NaN never);
    - ``moments``: ``hist``'s result and the count, NaN count, min, max, sum and sum of squares (float64) of
      the finite scores (one read of the part for both).
    """

    folder: Path
    column: str
    mode: Literal["hist", "lo", "select", "threshold", "moments"]
    arg: Any = None

    def run(self, part: Part) -> Any:
        values = pq.read_table(self.folder / f"parts/{part.stem}.parquet", columns=[self.column]) \
            .column(0).to_numpy()
        if len(values) != part.rows:
            raise ValueError(f"{self.folder}/parts/{part.stem}.parquet: {len(values)} rows, manifest says "
                             f"{part.rows}")
        if self.mode == "threshold":
            return (values >= self.arg).astype(np.uint8)
        keys = order_keys(values)
        if self.mode in ("hist", "moments"):
            hist = _sparse_counts(keys >> 16), int(np.count_nonzero(keys == 0))
            return hist if self.mode == "hist" else (hist, _moments(values))
        if self.mode == "lo":
            high = keys >> 16
            return {b: _sparse_counts(keys[high == b] & 0xFFFF) for b in self.arg}
        return (keys > self.arg).astype(np.uint8), np.flatnonzero(keys == self.arg)


def _sparse_counts(bins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(bins present, their counts) of 16-bit values, by counting (a part's rows never need sorting)."""
    counts = np.bincount(bins, minlength=BINS)
    present = np.flatnonzero(counts)
    return present, counts[present]


def _moments(values: np.ndarray) -> tuple:
    finite = values[np.isfinite(values)].astype(np.float64)
    if not finite.size:
        return len(values), len(values), np.inf, -np.inf, 0.0, 0.0
    return (len(values), len(values) - finite.size, float(finite.min()), float(finite.max()),
            float(finite.sum()), float(np.square(finite).sum()))


def _sparse_add(total: np.ndarray, sparse: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    np.add.at(total, sparse[0].astype(np.int64), sparse[1])
    return total


class Column:
    """One score column of a score artifact, processed part by part on an executor."""

    def __init__(self, folder: Path, parts: list[Part], column: str, executor: Executor, progress: bool = False):
        self.folder, self.column, self.executor, self.progress = Path(folder), column, executor, progress
        self.parts = parts
        self.size = sum(p.rows for p in self.parts)
        self._hist: tuple[np.ndarray, int] | None = None

    def _pass(self, mode: str, combine, initial, arg: Any = None) -> Any:
        task = PartPass(self.folder, self.column, mode, arg)
        return self.executor.fold(task, self.parts, combine, initial, f"{mode} {self.column}", self.progress)

    def high_histogram(self) -> tuple[np.ndarray, int]:
        """Counts of the keys' high 16 bits over the column (NaN included in bin 0), and the NaN count."""
        if self._hist is None:
            def add(acc, i, result):
                return _sparse_add(acc[0], result[0]), acc[1] + result[1]
            self._hist = self._pass("hist", add, (np.zeros(BINS, np.int64), 0))
        return self._hist

    def not_nan_count(self) -> int:
        """The rows that take part in a ranking (NaN never does)."""
        return self.size - self.high_histogram()[1]

    def keys_at(self, ranks: Sequence[int]) -> list[int]:
        """The order keys at 0-based ascending ranks among the non-NaN rows (two passes for all ranks)."""
        hist, nan = self.high_histogram()

        def lows(bins: tuple[int, ...]) -> dict[int, np.ndarray]:
            return self._pass("lo", _merge_lo, {b: np.zeros(BINS, np.int64) for b in bins}, bins)
        return [key for key, _ in radix_select(hist, nan, lows, ranks)]

    def select(self, key: int, counts: np.ndarray) -> tuple[np.ndarray, int]:
        """Set ``counts[i] = 1`` where the key is above ``key``; return the global positions of the ties (keys
        equal to ``key``) and how many rows are above."""
        def write(acc, i, result):
            part = self.parts[i]
            counts[part.offset:part.offset + part.rows] = result[0]
            acc[0].append(part.offset + result[1])
            return acc[0], acc[1] + int(np.count_nonzero(result[0]))
        ties, above = self._pass("select", write, ([], 0), key)
        return (np.sort(np.concatenate(ties)) if ties else np.zeros(0, np.int64)), above

    def threshold(self, value: float, counts: np.ndarray) -> None:
        def write(_, i, mask):
            part = self.parts[i]
            counts[part.offset:part.offset + part.rows] = mask
        self._pass("threshold", write, None, value)

    def stats(self) -> dict:
        """The score manifest's column statistics, from one moments pass and the radix passes."""
        def keep(acc, i, result):  # a row per part, summed in part order below: float sums in arrival
            hist, moments = result  # order would differ in their last bits from one executor to another
            acc[0][i] = moments
            return acc[0], _sparse_add(acc[1], hist[0]), acc[2] + hist[1]
        table, hist, nan = self._pass("moments", keep, (np.zeros((len(self.parts), 6), np.float64),
                                                        np.zeros(BINS, np.int64), 0))
        self._hist = (hist, nan)  # the quantiles' radix search needs no pass of its own
        count, nan = int(table[:, 0].sum()), int(table[:, 1].sum())
        low, high = (table[:, 2].min(), table[:, 3].max()) if len(table) else (np.inf, -np.inf)
        total, squares = float(table[:, 4].sum()), float(table[:, 5].sum())
        finite = count - nan
        if not finite:
            return {"count": count, "nan": count}
        mean = total / finite
        return {"count": count, "nan": nan, "min": float(low), "max": float(high), "mean": float(mean),
                "std": float(np.sqrt(max(squares / finite - mean * mean, 0.0))),
                **self._quantiles(finite, {"p10": 0.1, "p50": 0.5, "p90": 0.9})}

    def _quantiles(self, finite: int, wanted: dict[str, float]) -> dict[str, float]:
        """numpy's default (linear) quantiles of the finite values, from exact order statistics of the non-NaN
        ones (the same rows: the score stage refuses infinite scores)."""
        positions = {name: q * (finite - 1) for name, q in wanted.items()}
        ranks = sorted({int(np.floor(p)) for p in positions.values()} | {int(np.ceil(p)) for p in positions.values()})
        values = dict(zip(ranks, (key_value(k) for k in self.keys_at(ranks))))
        out = {}
        for name, p in positions.items():
            a, b, t = values[int(np.floor(p))], values[int(np.ceil(p))], p - np.floor(p)
            out[name] = float(a + (b - a) * t) if t < 0.5 else float(b - (b - a) * (1 - t))
        return out


def radix_select(high: np.ndarray, nan: int, low_histograms, ranks: Sequence[int]) -> list[tuple[int, int]]:
    """``(key, rows at or below it)`` at each 0-based ascending rank among the non-NaN order keys.

    ``high`` counts the keys' high 16 bits (NaN keys, which are 0, in bin 0; ``nan`` of them, left out of the
    ranking; pass 0 to rank them as the lowest key); ``low_histograms(bins)`` returns, for each of those high
    bins, the dense counts of the low 16 bits of its keys (one more look at the data, for all ranks at once).
    """
    below = np.cumsum(high) - nan  # ranked keys with high bits <= b
    bins = [int(np.searchsorted(below, r, side="right")) for r in ranks]
    lows = low_histograms(tuple(sorted(set(bins))))
    found = []
    for r, b in zip(ranks, bins):
        lo = lows[b].copy()
        if b == 0:
            lo[0] -= nan
        before = int(below[b - 1]) if b else 0
        inside = np.cumsum(lo)
        low = int(np.searchsorted(inside, r - before, side="right"))
        found.append(((b << 16) | low, before + int(inside[low])))
    return found


def _merge_lo(acc: dict, i: int, result: dict) -> dict:
    for b, sparse in result.items():
        _sparse_add(acc[b], sparse)
    return acc


def top_k(column: Column, k: int, uids: np.ndarray, counts: np.ndarray) -> None:
    """Keep exactly the k best rows (score desc, uid asc; NaN never) in ``counts`` (0 elsewhere)."""
    k = min(k, column.not_nan_count())
    if k <= 0:
        return
    [key] = column.keys_at([column.not_nan_count() - k])
    ties, above = column.select(key, counts)
    need = k - above
    if need <= 0:
        return
    from filterbench.harness.uids import UID_DTYPE

    tie_uids = np.asarray(uids[ties]).astype(UID_DTYPE)
    counts[ties[np.argsort(tie_uids, kind="stable")[:need]]] = 1


def datacomp_fraction(column: Column, fraction: float, counts: np.ndarray) -> None:
    """DataComp's ``get_threshold``: ``n = int(N*f)``, ``t`` the (n+1)-th largest score, keep ``score >= t``."""
    n, ranked = int(column.size * fraction), column.not_nan_count()
    if n >= ranked:
        column.threshold(-np.inf, counts)  # every non-NaN score
        return
    [key] = column.keys_at([ranked - 1 - n])
    column.threshold(key_value(key), counts)
