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

