"""The corruption matrix: every input file kind x every way a file goes bad -> one line naming the file, exit 2,
nothing already written lost.

Kinds: pool metadata parquet, npz sidecar, image tar, a selection's subset .npy (a store artifact), an eval set
shard, a leaderboard record, a recipe.  Corruptions: truncated, a flipped bit, wrong shape, wrong dtype, empty,
missing, permission denied.  A flipped bit is placed in the file's structure (header, footer, directory,
syntax); one inside a payload is caught only where the format carries a checksum (npz members: zip CRC-32;
store artifacts: SHA-256; records: their digest) and is listed in docs/reliability.md as not guaranteed for
parquet, tar and YAML payloads.  Permission denied is real: as root the command runs as ``nobody``.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from filterbench.harness.cli import cli
from filterbench.harness.store import Store

CORRUPTIONS = ("truncated", "bit-flipped", "wrong shape", "wrong dtype", "empty", "missing", "permission denied")


@dataclass
class World:
    """Copies of every input, under one world-readable folder (so that `nobody` can read what it should)."""

    root: Path
    pool: Path
    store: Path
    selection: str
    train: str
    evalsets: Path
    tasklist: Path
    records: Path
    recipe: Path


@pytest.fixture(scope="module")
def base_world(tiny_pool, toy_eval, tmp_path_factory):
    """The inputs, built once: a pool, a store with a score, a selection and a train artifact, eval sets,
    records and a recipe."""
    from filterbench import get_sampler, get_scorer
    from filterbench.harness.pool import Pool
    from filterbench.harness.stages.sample import run_sample
    from filterbench.harness.stages.score import run_score
    from filterbench.leaderboard.records import DEFAULT_RECORDS_DIR

    root = tmp_path_factory.mktemp("corruption")
    toy_store, train_key, sets, tasklist = toy_eval
    shutil.copytree(toy_store, root / "store")
    store = Store(root / "store")
    shutil.copytree(tiny_pool, root / "pool")
    scores = run_score(store, Pool(root / "pool"), get_scorer("clip_score"), progress=False)
    selection = run_sample(store, get_sampler("top_fraction", fraction=0.5), [scores])
    shutil.copytree(sets, root / "evalsets")
    shutil.copy(tasklist, root / "toy_v1.yaml")
    (root / "records").mkdir()
    for path in sorted((DEFAULT_RECORDS_DIR / "nano").glob("no_filter-*.json")):
        (root / "records" / "nano").mkdir(exist_ok=True)
        shutil.copy(path, root / "records" / "nano" / path.name)
    (root / "recipe.yaml").write_text("version: 1\nname: corrupt_me\nscorers:\n  - {name: clip_score, params: "
                                      "{model: l14}}\nsampler: {name: top_fraction, params: {fraction: 0.3}}\n")
    return World(root, root / "pool", root / "store", selection.key, train_key, root / "evalsets",
                 root / "toy_v1.yaml", root / "records", root / "recipe.yaml")


@pytest.fixture()
def world(base_world):
    """A private, world-readable copy of every input for one case."""
    root = Path(tempfile.mkdtemp(prefix="fb-corrupt-"))
    shutil.copytree(base_world.root, root, dirs_exist_ok=True)
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            os.chmod(Path(folder) / name, 0o777 if name in dirs else 0o666)
    os.chmod(root, 0o777)
    moved = {k: (root / Path(v).relative_to(base_world.root) if isinstance(v, Path) else v)
             for k, v in vars(base_world).items() if k != "root"}
    yield World(root, **moved)
    shutil.rmtree(root, ignore_errors=True)


# -- what breaks each kind -----------------------------------------------------------------------------------
def _parquet_rows(path: Path, keep: Callable[[pa.Table], pa.Table]) -> None:
    pq.write_table(keep(pq.read_table(path)), path)


def _tar_members(path: Path, change: Callable[[tarfile.TarInfo, bytes], tuple | None]) -> None:
    with tarfile.open(path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar]
    with tarfile.open(path, "w") as tar:
        for member, data in members:
            changed = change(member, data)
            if changed is not None:
                member.size = len(changed[1])
                tar.addfile(changed[0], io.BytesIO(changed[1]))


def _npz(path: Path, change: Callable[[np.ndarray], np.ndarray]) -> None:
    with np.load(path) as npz:
        arrays = {k: change(npz[k]) for k in npz.files}
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def _npz_payloads(data: bytes) -> list[int]:
    """One byte in the middle of each array's data (whichever arrays a scorer reads, one of them is hit)."""
    import struct
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        infos = archive.infolist()
    offsets = []
    for info in infos:  # local header: 30 bytes, then the name and the extra field (lengths at bytes 26-29)
        name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26:info.header_offset + 30])
        offsets.append(info.header_offset + 30 + name_len + extra_len + info.compress_size // 2)
    return offsets


def _json(path: Path, change: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@dataclass(frozen=True)
class Kind:
    culprit: Callable[[World], Path]
    command: Callable[[World], list]
    flip_at: Callable[[bytes], list[int]]  # bytes of the file's structure (or checksummed payload)
    shape: Callable[[Path], None]
    dtype: Callable[[Path], None]


KINDS = {
    "parquet": Kind(
        culprit=lambda w: sorted((w.pool / "metadata").glob("*.parquet"))[0],
        command=lambda w: ["score", "clip_score", "--pool", w.pool],
        flip_at=lambda data: [len(data) - 8],  # the footer's length field
        shape=lambda p: _parquet_rows(p, lambda t: t.slice(0, t.num_rows - 1)),  # a row fewer than its npz
        dtype=lambda p: _parquet_rows(p, lambda t: t.set_column(t.schema.get_field_index("uid"), "uid",
                                                                pa.array(range(t.num_rows)))),
    ),
    "npz": Kind(
        culprit=lambda w: sorted((w.pool / "metadata").glob("*.npz"))[0],
        # b32: features the store has no score of yet (a payload flip keeps the pool key: the key hashes each
        # member's CRC-32 from the zip directory, and the scores of the intact features stay valid)
        command=lambda w: ["score", "clip_score", "--pool", w.pool, "-p", "model=b32"],
        flip_at=_npz_payloads,  # inside every array: the members' CRC-32 catches it
        shape=lambda p: _npz(p, lambda a: a[:-1]),
        dtype=lambda p: _npz(p, lambda a: a.astype(str)),
    ),
    "tar": Kind(
        culprit=lambda w: sorted((w.pool / "shards").glob("*.tar"))[0],
        command=lambda w: ["pool", "check", w.pool, "--deep"],
        flip_at=lambda data: [0],  # the first header's name: its checksum no longer matches
        shape=lambda p: _tar_members(p, lambda m, d: None if m.name.endswith(".json") else (m, d)),
        dtype=lambda p: _tar_members(p, lambda m, d: (m, b"not json" if m.name.endswith(".json") else d)),
    ),
    "subset": Kind(
        culprit=lambda w: next((w.store / "selections").glob(f"*-{w.selection}")) / "subset.npy",
        command=lambda w: ["train", w.selection, "--scale", "nano-xs", "--workdir", w.store],
        flip_at=lambda data: [len(data) - 3],
        shape=lambda p: np.save(p, np.load(p).reshape(-1, 1)),
        dtype=lambda p: np.save(p, np.load(p)["f0"].astype(np.float64)),
    ),
    "eval shard": Kind(
        culprit=lambda w: w.evalsets / "wds_toy-b_test" / "test" / "0.tar",
        command=lambda w: ["eval", w.train, "--evalsets", w.evalsets, "--tasklist", w.tasklist,
                           "--workdir", w.store],
        flip_at=lambda data: [0],
        shape=lambda p: _tar_members(p, lambda m, d: None if m.name.endswith(".cls") else (m, d)),
        dtype=lambda p: _tar_members(p, lambda m, d: (m, b"red" if m.name.endswith(".cls") else d)),
    ),
    "record": Kind(
        culprit=lambda w: sorted((w.records / "nano").glob("*.json"))[0],
        command=lambda w: ["leaderboard", "build", "--records", w.records, "--out", w.root / "board"],
        flip_at=lambda data: [data.index(b'"seed"') + 2],
        shape=lambda p: _json(p, lambda d: d.__setitem__("groups", list(d["groups"].values()))),
        dtype=lambda p: _json(p, lambda d: d.__setitem__("seed", "zero")),
    ),
    "recipe": Kind(
        culprit=lambda w: w.recipe,
        command=lambda w: ["validate", w.recipe],
        flip_at=lambda data: [data.index(b"scorers:") + len("scorers")],  # the colon
        shape=lambda p: p.write_text(p.read_text().replace("scorers:\n  - {name", "scorers:\n    {name")),
        dtype=lambda p: p.write_text(p.read_text().replace("version: 1", "version: one")),
    ),
}
#: cases that are not a corruption: deleting a record is a reviewed change to the repository
NOT_APPLICABLE = {("record", "missing")}


def corrupt(path: Path, how: str, kind: Kind) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "bit-flipped":
        flipped = bytearray(data)
        for at in kind.flip_at(data):
            flipped[at] ^= 0x10
        path.write_bytes(bytes(flipped))
    elif how == "wrong shape":
        kind.shape(path)
    elif how == "wrong dtype":
        kind.dtype(path)
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "missing":
        path.unlink()
    elif how == "permission denied":
        path.chmod(0)


def _invoke(args: list, as_nobody: bool, env: dict) -> tuple[int, list[str]]:
    """The CLI in-process, or (for permission denied, as root) in a forked child running as `nobody`."""
    args = [str(a) for a in args]
    if not as_nobody:
        result = CliRunner(env=env).invoke(cli, args, catch_exceptions=False)
        return result.exit_code, result.output.strip().splitlines()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop root, run, report through the pipe, exit without running pytest's teardown
        code, lines = 99, ["the child failed before running the command"]
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            result = CliRunner(env=env).invoke(cli, args, catch_exceptions=False)
            code, lines = result.exit_code, result.output.strip().splitlines()
        except BaseException as exc:  # noqa: BLE001 - report anything to the parent
            lines = [f"child raised {type(exc).__name__}: {exc}"]
        finally:
            os.write(write, json.dumps([code, lines]).encode())
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        output = pipe.read()
    os.waitpid(pid, 0)
    code, lines = json.loads(output)
    return code, lines


def _snapshot(world: World) -> dict[str, bytes]:
    """Everything already written: finished artifacts and a previous board."""
    files = {}
    for folder in [*Store(world.store).iter_artifacts(), *([world.root / "board"] if (world.root / "board").is_dir()
                                                             else [])]:
        path = folder.path if hasattr(folder, "path") else folder
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            try:
                files[str(file)] = file.read_bytes()
            except PermissionError:
                files[str(file)] = b"<unreadable>"
    return files


@pytest.mark.parametrize("how", CORRUPTIONS)
@pytest.mark.parametrize("kind_name", list(KINDS))
def test_a_corrupt_input_fails_in_one_line_naming_the_file(world, kind_name, how, monkeypatch):
    if (kind_name, how) in NOT_APPLICABLE:
        pytest.skip("not a corruption (see NOT_APPLICABLE)")
    kind = KINDS[kind_name]
    CliRunner().invoke(cli, ["leaderboard", "build", "--records", str(world.records), "--out",
                             str(world.root / "board")], catch_exceptions=False)  # something already written
    culprit = kind.culprit(world)
    corrupt(culprit, how, kind)
    before = _snapshot(world)
    env = {"FILTERBENCH_HOME": str(world.store), "HOME": str(world.root)}
    as_nobody = how == "permission denied" and os.geteuid() == 0
    code, lines = _invoke(kind.command(world), as_nobody, env)
    errors = [line for line in lines if line.startswith("error: ")]
    assert code == 2 and len(errors) == 1 and lines[-1] == errors[0], (code, lines)
    assert not any("Traceback" in line for line in lines), lines
    named = culprit.name if kind_name != "eval shard" else culprit.parent.name  # the eval set's folder
    assert named in errors[0], f"the error does not name {named}: {errors[0]}"
    after = _snapshot(world)
    lost = [name for name, data in before.items() if after.get(name) != data]
    assert not lost, f"a command that failed changed what was already written: {lost}"
