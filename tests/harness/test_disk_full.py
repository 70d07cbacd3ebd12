"""A full disk: a store on a small tmpfs fails in one line, keeps what it finished, and resumes once there is
space, to the same bytes as a run that never ran out of space.

Mounting needs CAP_SYS_ADMIN (root in most containers and CI runners); elsewhere the test is skipped, saying so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from filterbench.harness.cli import cli
from filterbench.harness.store import Store


@pytest.fixture()
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True,
                            text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs CAP_SYS_ADMIN): {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(mount: Path, leave_bytes: int) -> Path:
    """A filler file that leaves about ``leave_bytes`` free."""
    free = shutil.disk_usage(mount).free
    filler = mount / "filler"
    with open(filler, "wb") as handle:
        handle.write(b"\0" * max(0, free - leave_bytes))
    return filler


def test_a_full_disk_fails_in_one_line_and_the_next_run_resumes(small_disk, tiny_pool, tmp_path):
    store_dir = small_disk / "store"
    filler = _fill(small_disk, 40 * 1024)  # room for the pool's registration and a score part, not both parts
    runner = CliRunner(env={"FILTERBENCH_HOME": str(store_dir)})
    full = runner.invoke(cli, ["score", "clip_score", "--pool", str(tiny_pool)], catch_exceptions=False)
    lines = [line for line in full.output.splitlines() if line.strip() and "unit/s]" not in line]  # (progress bar)
    assert full.exit_code == 2 and len(lines) == 1, full.output
    assert "no space left on device" in lines[0] and "kept 1 finished unit(s) of scores/clip_score-" in lines[0]
    store = Store(store_dir)
    for artifact in store.iter_artifacts():
        artifact.verify()  # the pool's registration finished before the disk filled: intact
    assert not list(store_dir.glob("scores/clip_score-*")), "a score artifact completed on a full disk"

    filler.unlink()
    resumed = runner.invoke(cli, ["score", "clip_score", "--pool", str(tiny_pool)], catch_exceptions=False)
    assert resumed.exit_code == 0, resumed.output
    artifact = store.find(resumed.output.strip().splitlines()[-1])
    artifact.verify()
    clean = CliRunner(env={"FILTERBENCH_HOME": str(tmp_path / "clean")}).invoke(
        cli, ["score", "clip_score", "--pool", str(tiny_pool)], catch_exceptions=False)
    reference = Store(tmp_path / "clean").find(clean.output.strip().splitlines()[-1])
    assert {k: v["digest"] for k, v in artifact.manifest["outputs"].items()} == \
        {k: v["digest"] for k, v in reference.manifest["outputs"].items()}
    assert os.listdir(store_dir / "scores") == [artifact.path.name]
