"""The tutorial in docs/writing-a-plugin.md runs as written: its files are installed as a real distribution
(entry points included) and its `python run` blocks are executed in order."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.M | re.S)


def _blocks(doc: str):
    for lang, info, body in BLOCK.findall((ROOT / "docs" / doc).read_text()):
        yield lang, info.strip(), body


def test_writing_a_plugin_tutorial_runs(tmp_path, monkeypatch):
    package = tmp_path / "fb-caption-length"
    package.mkdir()
    runs = []
    for lang, info, body in _blocks("writing-a-plugin.md"):
        if info.startswith("file="):
            (package / info[len("file="):]).write_text(body)
        elif lang == "python" and info == "run":
            runs.append(body)
    assert (package / "fb_caption_length.py").exists() and (package / "pyproject.toml").exists() and len(runs) >= 3
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q", "--target",
                    str(target), str(package)], check=True, capture_output=True)
    monkeypatch.syspath_prepend(str(target))
    monkeypatch.chdir(tmp_path)
    from filterbench.harness import manager

    manager.reset_plugins()
    try:
        namespace: dict = {}
        for body in runs:
            exec(compile(body, "writing-a-plugin.md", "exec"), namespace)
        plugins = manager.get_plugins()
        assert plugins.infos["caption_length"].distribution == "fb-caption-length"
    finally:
        manager.reset_plugins()


def test_every_hook_is_documented():
    from filterbench.harness import hookspecs

    reference = (ROOT / "docs" / "plugin-hooks.md").read_text()
    names = [n for n in dir(hookspecs) if hasattr(getattr(hookspecs, n), "filterbench_spec")]
    assert {"register_scorers", "register_samplers", "register_model_configs", "stage_finished"} <= set(names)
    for name in names:
        spec = getattr(hookspecs, name)
        assert spec.__doc__ and "Args:" in spec.__doc__ and "Returns:" in spec.__doc__
        assert f"## `{name}" in reference


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = [body.strip() for lang, _, body in BLOCK.findall(readme) if lang == "bash"]
    test_command = next(c for c in commands if "pytest" in c)
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_command in ci.splitlines()


def test_method_docs_recipe_examples_validate(tmp_path):
    """Every ```yaml block of docs/methods/*.md that is a whole recipe (``version:``, ``sampler:``) validates."""
    from filterbench.harness.recipes import BASELINES_DIR, check_recipe, load_recipe

    found = 0
    for doc in sorted((ROOT / "docs" / "methods").glob("*.md")):
        for lang, _, body in _blocks(f"methods/{doc.name}"):
            if lang == "yaml" and "sampler:" in body and "version:" in body:
                path = tmp_path / f"{doc.stem}-{found}.yaml"
                path.write_text(body.replace("/path/to/filterbench/baselines", str(BASELINES_DIR)))
                resolved = check_recipe(load_recipe(path))
                assert resolved["recipe"]["name"] and resolved["scales"], doc.name
                found += 1
    assert found >= 1



def test_worlds_walkthrough_runs(tmp_path, monkeypatch):
    """docs/worlds.md's DataComp walkthrough, run as written on fabricated folders in DataComp's layout put where
    its paths say (the documented paths are rewritten under a temporary root)."""
    import shlex

    import numpy as np
    from click.testing import CliRunner

    from filterbench.harness.cli import cli
    from filterbench.harness.evaluation.api import load_tasklist, write_classification_evalset
    from filterbench.testing import fabricate_pool

    data = tmp_path / "data" / "datacomp"
    fabricate_pool(data / "small", rows=200, shards=2)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (16, 16, 3)).astype(np.uint8) for _ in range(4)]
    for task in load_tasklist("datacomp_v1").tasks:  # one tiny classification set per task folder
        write_classification_evalset(data / "evalsets" / task.folder, images, [0, 1, 0, 1], ["a", "b"],
                                     ["a photo of a {c}."], shard_size=4)
    (data / "in1k_l14").mkdir()
    np.save(data / "in1k_l14" / "in1k_clip_vit_l14_0.npy", rng.standard_normal((3, 24)).astype(np.float32))
    monkeypatch.setenv("FILTERBENCH_HOME", str(tmp_path / "work"))
    blocks = [body for lang, info, body in _blocks("worlds.md") if lang == "bash" and info == "walkthrough"]
    assert len(blocks) == 1
    for line in blocks[0].strip().splitlines():
        args = shlex.split(line.replace("/data/", f"{tmp_path}/data/"))
        assert args[0] == "filterbench"
        result = CliRunner().invoke(cli, args[1:])
        assert result.exit_code == 0, f"{line}\n{result.output}"
    selection = Path(result.output.strip().splitlines()[-1])  # `run --until sample` prints the selection last
    assert selection.parent == tmp_path / "work" / "selections" and (selection / "subset.npy").is_file()


def test_readme_main_job_regenerates_the_committed_board():
    """`run` writes records under the work directory unless told otherwise; the README's main job, run from a
    checkout, must still write the committed board's records (and so rebuild that board)."""
    readme = (ROOT / "README.md").read_text()
    commands = [body.strip() for lang, _, body in BLOCK.findall(readme) if lang == "bash"]
    main_job = next(c for c in commands if "filterbench run" in c)
    assert "--records leaderboard/records" in main_job


def test_scale_slurm_walkthrough_runs(tmp_path):
    """docs/scale.md's Slurm round trip, run as written: the array's elements run by hand, the rerun completes."""
    import os

    from filterbench.testing import fabricate_pool

    fabricate_pool(tmp_path / "data" / "pool", rows=240, shards=4)
    env = {**os.environ, "FILTERBENCH_HOME": str(tmp_path / "work"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    blocks = [body for lang, info, body in _blocks("scale.md") if lang == "bash" and info == "walkthrough"]
    assert len(blocks) == 1
    outputs = []
    for line in blocks[0].strip().splitlines():
        done = subprocess.run(["bash", "-c", line.replace("/data/", f"{tmp_path}/data/")], env=env,
                              capture_output=True, text=True)
        assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
        outputs.append((done.stdout, done.stderr))
    assert "slurm: 4 unit(s) in 4 array element(s)" in outputs[0][1]
    assert outputs[1][0].count("ran 1 unit(s)") == 4
    selection = Path(outputs[2][0].strip().splitlines()[-1])  # `run --until sample` prints the selection last
    assert selection.parent == tmp_path / "work" / "selections" and (selection / "subset.npy").is_file()
