"""The wheel installs as `filterbench.*` only, and its console script runs."""

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True)
    return next(out.glob("filterbench-*.whl"))


def test_every_source_package_is_listed_and_namespaced(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"filterbench"}, tops  # no site-wide `harness` or `plugins`
    for init in ROOT.glob("*/**/__init__.py"):
        rel = init.relative_to(ROOT)
        if rel.parts[0] in ("tests", "docs", ".venv", "build") or rel.parts[0].startswith("."):
            continue
        assert f"filterbench/{rel.as_posix()}" in names, f"{rel} is missing from pyproject's package list"
    assert "filterbench/baselines/clip_score_l14_top30.yaml" in names
    data_files = [p.relative_to(ROOT).as_posix() for pattern in ("harness/**/*.yaml", "harness/**/*.json")
                  for p in ROOT.glob(pattern)]
    for rel in data_files:  # task lists, model configs: package data in sub-folders is easy to lose
        assert f"filterbench/{rel}" in names, f"{rel} is missing from the wheel"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert re.search(r"^filterbench = filterbench\.harness\.cli:main$", text, re.M)
    assert "[filterbench]" in text and "clip_score = filterbench.plugins.clip_score" in text


def test_installed_wheel_runs_its_console_script(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(target)}
    probe = subprocess.run([sys.executable, "-c", "import filterbench; print(filterbench.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert probe.stdout.strip().startswith(str(target))
    result = subprocess.run([str(target / "bin" / "filterbench"), "--help"], cwd=tmp_path, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "score" in result.stdout and "sample" in result.stdout
    listed = subprocess.run([str(target / "bin" / "filterbench"), "ls", "samplers"], cwd=tmp_path, env=env,
                            capture_output=True, text=True)
    assert "top_fraction" in listed.stdout, listed.stderr


def test_ci_fails_when_a_system_package_cannot_be_installed(tmp_path):
    """A missing chromium or WordNet must fail CI in one clear line, not turn the tests that need them into skips
    (tests/test_docs.py checks that .ci/run runs exactly the README's test command)."""
    checkout = tmp_path / "checkout"
    (checkout / ".ci").mkdir(parents=True)
    (checkout / ".ci" / "run").write_bytes((ROOT / ".ci" / "run").read_bytes())
    tools = tmp_path / "bin"  # a PATH with no chromium and an apt-get that cannot install anything
    tools.mkdir()
    (tools / "apt-get").write_text("#!/bin/sh\necho 'E: Unable to locate package' >&2\nexit 100\n")
    (tools / "apt-get").chmod(0o755)
    (tools / "dirname").symlink_to(shutil.which("dirname"))  # (no python3: the old script went on to the tests)
    result = subprocess.run(["/bin/bash", str(checkout / ".ci" / "run")], env={"PATH": str(tools)},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert "error: could not install the system package(s) chromium" in result.stderr
