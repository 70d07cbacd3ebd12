"""The resharder: a feed plan -> webdataset shards copied from the pool's tar shards.

Like DataComp's ``resharder.py`` every file of a selected sample (``.jpg``, ``.txt``, ``.json``, ...) is copied
verbatim under the key ``<uid>-<j>`` (``j`` = which copy of the uid), and uids without an image are counted as
missing, never fatal.  Unlike it, the order is planned before anything is written (:mod:`.plan`): a buffer
shuffle cannot keep the copies of a uid out of one batch when the batch is about as large as the buffer
(DataComp small: 4,096 vs open_clip's 5,000), a planned deal can.

Work is split into units that run in parallel (forked processes) and resume independently:

- ``index-<tar>``: one pass over a pool tar's headers -> ``data/index/<tar>.npz`` (offsets of every file);
- ``shard-segNNN-KKKKKKKK``: one output shard, a contiguous slice of a segment's planned order; its samples'
  files are read with positioned reads sorted by (tar, offset), so memory holds one output shard at most.

Output, under ``data/``: ``segNNN/KKKKKKKK.tar`` (equal-sized shards: resampling picks shards uniformly, so a short
shard would over-weight its samples, DataComp trap 8), ``segNNN/KKKKKKKK.idx.npy`` (byte offset of every sample
plus the end, so the planned loader can read any slice), ``segNNN/sizes.json`` (open_clip's shard-size table)
and ``layout.json``.  Shards are written to a temporary name and renamed, with fixed tar metadata, so a rerun
produces the same bytes (plain ustar members with fixed owner, mode and mtime: :mod:`.tarformat`).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from filterbench.harness.atomic import publish
from filterbench.harness.executor import run_units
from filterbench.harness.store import Building, write_json_atomic
from filterbench.harness.training import tarformat
from filterbench.harness.training.plan import Plan, copy_numbers
from filterbench.harness.training.tarindex import SampleTable, build_table, index_tar, save_index
from filterbench.harness.uids import pairs_to_hex

LAYOUT_VERSION = 1
DEFAULT_SHARD_SIZE = 5000
MIN_SUBSET_SHARDS = 16


@dataclass(frozen=True)
class ShardUnit:
    """One output shard: positions ``[start, stop)`` of segment ``segment``'s planned order."""

    segment: int
    shard: int
    start: int
    stop: int

    @property
    def name(self) -> str:
        return f"shard-seg{self.segment:03d}-{self.shard:08d}"

    @property
    def tar(self) -> str:
        return f"data/seg{self.segment:03d}/{self.shard:08d}.tar"

    @property
    def idx(self) -> str:
        return f"data/seg{self.segment:03d}/{self.shard:08d}.idx.npy"


def index_pool(building: Building, shards_dir: Path, workers: int = 1, progress: bool = False) -> list[Path]:
    """Index every pool tar once (resumable per tar); returns the tar paths in name order."""
    tars = sorted(shards_dir.glob("*.tar")) if shards_dir.is_dir() else []
    (building.dir / "data" / "index").mkdir(parents=True, exist_ok=True)
    todo = [t for t in tars if building.unit_done(f"index-{t.stem}") is None]

    def work(tar: Path) -> None:
        rel = f"data/index/{tar.stem}.npz"
        save_index(building.dir / rel, index_tar(tar))
        building.mark_unit(f"index-{tar.stem}", files=[rel])

    run_units(work, todo, workers, "index pool tars", progress)
    return tars


def load_table(building: Building, tars: list[Path], pool_uids: np.ndarray) -> SampleTable:
    indexes = []
    for tar in tars:
        with np.load(building.dir / f"data/index/{tar.stem}.npz", allow_pickle=False) as npz:
            indexes.append({k: npz[k] for k in npz.files})
    return build_table(tars, indexes, pool_uids)


def plan_units(plan: Plan, shard_size: int = DEFAULT_SHARD_SIZE) -> list[ShardUnit]:
    """Cut each segment's order into equal-sized shards (sizes differ by at most one)."""
    units = []
    for e, rows in enumerate(plan.segments):
        size = shard_size
        if plan.mode == "subset":  # enough shards for resampling to mix, but never tiny ones
            size = min(shard_size, max(64, math.ceil(rows.size / MIN_SUBSET_SHARDS)))
        count = max(1, math.ceil(rows.size / size))
        bounds = np.linspace(0, rows.size, count + 1).round().astype(np.int64)
        units += [ShardUnit(e, k, int(bounds[k]), int(bounds[k + 1])) for k in range(count)]
    return units


def write_shards(building: Building, table: SampleTable, pool_uids: np.ndarray, plan: Plan,
                 units: list[ShardUnit], workers: int = 1, progress: bool = False) -> dict:
    """Write every output shard not already done; returns the layout (also saved as ``data/layout.json``)."""
    copies = [copy_numbers(rows) for rows in plan.segments]
    for e in range(len(plan.segments)):
        (building.dir / f"data/seg{e:03d}").mkdir(parents=True, exist_ok=True)
    todo = [u for u in units if building.unit_done(u.name) is None]

    def work(unit: ShardUnit) -> None:
        rows = plan.segments[unit.segment][unit.start:unit.stop]
        _write_shard(building.dir, unit, rows, copies[unit.segment][unit.start:unit.stop], table, pool_uids)
        building.mark_unit(unit.name, files=[unit.tar, unit.idx], samples=int(rows.size))

    run_units(work, todo, workers, "write shards", progress)
    return _save_layout(building.dir, plan, units)


def _write_shard(root: Path, unit: ShardUnit, rows: np.ndarray, copies: np.ndarray, table: SampleTable,
                 pool_uids: np.ndarray) -> None:
    payload = read_samples(table, np.unique(rows))
    keys = pairs_to_hex(pool_uids[rows])
    target = root / unit.tar
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    offsets = [0]
    with open(tmp, "wb") as handle:
        for row, key, copy in zip(rows.tolist(), keys.tolist(), copies.tolist()):
            handle.writelines(tarformat.member(f"{key}-{copy}.{ext}", data) for ext, data in payload[row])
            offsets.append(handle.tell())
        handle.write(tarformat.END_OF_ARCHIVE)
        handle.flush()
        os.fsync(handle.fileno())
    index_tmp = root / f"{unit.idx}.tmp-{os.getpid()}.npy"
    np.save(index_tmp, np.asarray(offsets, dtype=np.int64))
    publish(tmp, target)
    publish(index_tmp, root / unit.idx)


def read_samples(table: SampleTable, rows: np.ndarray) -> dict[int, list[tuple[str, bytes]]]:
    """The files of each row's sample, read with positioned reads in (tar, offset) order."""
    wanted = sorted((tar, offset, size, row, ext) for row in rows.tolist()
                    for tar, ext, offset, size in table.files_of(row))
    out: dict[int, list[tuple[str, bytes]]] = {row: [] for row in rows.tolist()}
    handles: dict[int, int] = {}
    try:
        for tar, offset, size, row, ext in wanted:
            if tar not in handles:
                handles[tar] = os.open(table.tars[tar], os.O_RDONLY)
            data = os.pread(handles[tar], size, offset)
            if len(data) != size:
                raise OSError(f"{table.tars[tar]}: short read at offset {offset} (the tar changed after indexing?)")
            out[row].append((ext, data))
    finally:
        for fd in handles.values():
            os.close(fd)
    return out


def _save_layout(root: Path, plan: Plan, units: list[ShardUnit]) -> dict:
    segments = []
    for e in range(len(plan.segments)):
        shards = [{"name": Path(u.tar).name, "samples": u.stop - u.start} for u in units if u.segment == e]
        write_json_atomic(root / f"data/seg{e:03d}/sizes.json", {s["name"]: s["samples"] for s in shards})
        segments.append({"dir": f"seg{e:03d}", "samples": int(plan.segments[e].size), "shards": shards})
    layout = {"version": LAYOUT_VERSION, "mode": plan.mode, "segments": segments}
    write_json_atomic(root / "data" / "layout.json", layout)
    return layout


def shard_pattern(data_dir: Path, layout: dict, segment: int | None = None) -> str:
    """The brace pattern open_clip_train reads (``--train-data``): one segment's shards, or all of them."""
    segs = layout["segments"] if segment is None else [layout["segments"][segment]]
    counts = {len(s["shards"]) for s in segs}
    if len(counts) != 1:
        return "::".join(shard_pattern(data_dir, layout, i) for i in range(len(layout["segments"])))
    last = counts.pop() - 1
    shards = f"{{00000000..{last:08d}}}.tar" if last else "00000000.tar"
    if len(segs) == 1:
        return str(data_dir / segs[0]["dir"] / shards)
    return str(data_dir / f"seg{{000..{len(segs) - 1:03d}}}" / shards)


def layout_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
