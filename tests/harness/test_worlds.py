"""Worlds as providers: a local DataComp download registered once (on fabricated DataComp-layout folders), listed,
checked and run on by name; the registry's rules; one-line errors naming the world, part and file at fault."""

import json
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

from filterbench.harness.cli import cli
from filterbench.testing import one_task_tasklist

TASKLIST = one_task_tasklist("mini")


@pytest.fixture(scope="module")
def download(tmp_path_factory):
    """A DataComp download in miniature: pool, eval sets (one task, its task list beside) and target features."""
    from filterbench.harness.evaluation.api import folder_name, write_classification_evalset
    from filterbench.testing import fabricate_pool

    root = tmp_path_factory.mktemp("datacomp")
    fabricate_pool(root / "pool", rows=300, shards=2, seed=3)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (32, 32, 3)).astype(np.uint8) for _ in range(8)]
    write_classification_evalset(root / "evalsets" / folder_name("mini/colours"), images, [i % 2 for i in range(8)],
                                 ["red", "blue"], ["a photo of a {c} thing."], shard_size=4)
    (root / "mini_v1.yaml").write_text(textwrap.dedent(TASKLIST))
    (root / "in1k").mkdir()
    np.save(root / "in1k" / "in1k_clip_vit_l14_0.npy", rng.standard_normal((5, 24)).astype(np.float32))
    return root


@pytest.fixture()
def fb(workdir):
    def invoke(*args):
        return CliRunner().invoke(cli, [str(a) for a in args])

    return invoke


def _add(fb, download, name="dc", *extra):
    return fb("world", "add", name, "--pool", download / "pool", "--evalsets", download / "evalsets",
              "--tasklist", download / "mini_v1.yaml", "--target", download / "in1k", *extra)


def test_a_registered_download_is_listed_shown_checked_and_kept_in_the_store(fb, download, workdir):
    added = _add(fb, download)
    assert added.exit_code == 0, added.output
    stored = json.loads((workdir / "worlds" / "dc.json").read_text())
    assert stored["pool"] == str((download / "pool").resolve())
    assert stored["inputs"] == {"imagenet_train": str((download / "in1k").resolve())}
    listed = fb("world", "ls")
    assert [line.split()[:2] for line in listed.output.splitlines() if line.startswith("dc ")] == \
        [["dc", "datacomp_world"]]
    shown = json.loads(fb("world", "show", "dc").output)
    assert shown["provider"] == "datacomp_world" and shown["tasklist"] == str(download / "mini_v1.yaml")
    checked = fb("world", "check", "dc")
    assert checked.exit_code == 0 and "every part is present" in checked.output


def test_check_names_the_missing_file_in_one_line_and_exits_2(fb, download, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(download, copy)
    assert _add(fb, copy, "broken").exit_code == 0
    shard = next((copy / "evalsets").rglob("1.tar"))
    shard.unlink()
    sidecar = next((copy / "pool" / "metadata").glob("*.npz"))
    sidecar.unlink()
    checked = fb("world", "check", "broken")
    assert checked.exit_code == 2
    errors = [line for line in checked.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2 and all(line.startswith("error: world broken: ") for line in errors)
    assert str(sidecar) in errors[0] and "1.tar" in errors[1]


def test_add_refuses_missing_parts_and_taken_names(fb, download, workdir):
    no_tasks = fb("world", "add", "dc2", "--pool", download / "pool", "--evalsets", download / "evalsets")
    assert no_tasks.exit_code == 2  # the default task list, datacomp_v1, has 38 tasks; none is there
    assert "wds_" in no_tasks.output and "missing (task " in no_tasks.output
    assert len(no_tasks.output.strip().splitlines()) == 1
    assert not (workdir / "worlds" / "dc2.json").exists()
    taken = _add(fb, download, "nano")
    assert taken.exit_code == 2 and "world 'nano' already exists (provider nano_world)" in taken.output
    bad_target = _add(fb, download, "dc3", "--target", "imagenet21k=/no/such/file.txt")
    assert bad_target.exit_code == 2 and "input imagenet21k: /no/such/file.txt does not exist" in bad_target.output


def test_a_run_by_world_name_uses_its_pool_and_its_inputs(fb, download, workdir):
    from filterbench.harness.config import resolve_run_config
    from filterbench.harness.store import Store
    from filterbench.harness.targets import resolve_target

    assert _add(fb, download).exit_code == 0
    sampled = fb("run", "random_30", "--scale", "small", "--world", "dc", "--until", "sample")
    assert sampled.exit_code == 0, sampled.output
    selection = json.loads((workdir / "selections").glob("*/manifest.json").__next__().read_text())
    pool = Store(workdir).find(selection["pool_key"], kind="pools")
    assert pool.manifest["pool_root"] == str((download / "pool").resolve())
    config = resolve_run_config(workdir=workdir, scale="small", world="dc")
    assert config.evalsets == (download / "evalsets").resolve() and config.oracle is None
    target = resolve_target("imagenet_train", feature="l14_img", pool_root=config.pool)
    assert target.embeddings.shape == (5, 24) and "world input" in target.source


def test_unknown_worlds_and_scales_without_a_default_world_fail_in_one_line(fb, download):
    assert _add(fb, download).exit_code == 0
    unknown = fb("run", "no_filter", "--scale", "small", "--world", "dx")
    assert unknown.exit_code == 2 and "unknown world 'dx'; did you mean 'dc'?" in unknown.output
    nothing = fb("run", "no_filter", "--scale", "small")
    assert nothing.exit_code == 2
    assert nothing.output.strip() == ("error: scale 'small' has no default world: give --world NAME "
                                      "(see `filterbench world ls`) or --pool DIR")


def test_a_world_name_taken_twice_names_both_providers(tmp_path):
    from filterbench.harness.hookspecs import hookimpl
    from filterbench.harness.manager import Plugins
    from filterbench.harness.worlds import World, WorldError, WorldSource, world_sources

    def provider(name):
        class Provider:
            @hookimpl
            def register_worlds(self, register):
                register(WorldSource(name, "test", open=lambda log: World(name, tmp_path)))

        return Provider()

    plugins = Plugins(load_entry_points=False, extra=(("one", provider("w")), ("two", provider("w"))))
    with pytest.raises(WorldError, match="world 'w' is registered by both 'one' and 'two'"):
        world_sources(plugins, tmp_path)
    single = Plugins(load_entry_points=False, extra=(("one", provider("w")),))
    assert world_sources(single, tmp_path)["w"].provider == "one"
