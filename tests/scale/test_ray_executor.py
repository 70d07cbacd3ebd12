"""The Ray executor on a local 2-CPU cluster: the same bytes as the local executor, retries after a killed
worker, and an actor pool for GPU units (logical GPUs: the cluster is told it has one, the model runs on CPU).

Skipped when the ``ray`` extra is not installed; CI installs it (``.ci/run``)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the Ray executor needs the optional extra: pip install 'filterbench[ray]'")

import cloudpickle  # noqa: E402  (ships with ray)

from filterbench import get_scorer  # noqa: E402
from filterbench.harness.contract import Resources  # noqa: E402
from filterbench.harness.executor import LocalExecutor, Task  # noqa: E402
from filterbench.harness.pool import Pool  # noqa: E402
from filterbench.harness.ray_executor import RayExecutor  # noqa: E402
from filterbench.harness.stages.score import run_score  # noqa: E402
from filterbench.harness.store import Store  # noqa: E402

from filterbench.testing import artifact_bytes as output_bytes  # noqa: E402

# test-only tasks and plugins travel to Ray workers by value (workers cannot import the tests package)
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module", autouse=True)
def cluster():
    """One local cluster for the module: 2 CPUs and one logical GPU (~5 s to start)."""
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _score(root: Path, pool: Path, scorer, executor, plugins=None):
    return run_score(Store(root), Pool(pool), scorer, progress=False, executor=executor, plugins=plugins)


@pytest.mark.parametrize("name, params", [("clip_score", {}), ("negcliploss", {"batch_size": 64})])
def test_ray_tasks_write_the_local_executors_bytes(tmp_path, shard_pool, name, params):
    local = _score(tmp_path / "local", shard_pool, get_scorer(name, **params), LocalExecutor(1))
    remote = _score(tmp_path / "ray", shard_pool, get_scorer(name, **params), RayExecutor())
    assert remote.key == local.key and output_bytes(remote) == output_bytes(local)
    assert remote.manifest["executed_by"] == {"executor": "ray", "address": "local"}
    assert remote.manifest["stats"] == local.manifest["stats"]


def test_image_clusters_fit_then_ray_assignment_equals_local(tmp_path, shard_pool):
    targets = tmp_path / "targets.npy"
    np.save(targets, np.random.default_rng(7).standard_normal((5, 24)).astype(np.float32))
    # the fabricated pool's l14 features are 24-d; k-means on the pool, then the assignment per shard
    def scorer():
        return get_scorer("image_clusters", target=str(targets), clusters=6, min_points_per_cluster=4,
                          caption_filter=False)
    local = _score(tmp_path / "local", shard_pool, scorer(), LocalExecutor(1))
    remote = _score(tmp_path / "ray", shard_pool, scorer(), RayExecutor())
    assert remote.key == local.key and output_bytes(remote) == output_bytes(local)
    assert local.manifest["fit_stats"]["clusters"] == 6


@dataclass
class KillOnce(Task):
    """Runs ``inner`` but hard-kills its own worker process the first time it reaches ``victim``."""

    inner: Task
    victim: Any
    marker: Path

    @property
    def resources(self) -> Resources:
        return self.inner.resources

    def setup(self) -> None:
        self.inner.setup()

    def run(self, unit: Any) -> Any:
        if unit == self.victim and not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            os._exit(1)  # the worker dies mid-unit: no exception, no cleanup
        return self.inner.run(unit)


@dataclass
class KillingRay(RayExecutor):
    marker: Path | None = None

    def imap(self, task, units):
        return super().imap(KillOnce(task, units[1], self.marker), units)


def test_a_killed_worker_is_retried_and_the_artifact_is_unchanged(tmp_path, shard_pool):
    local = _score(tmp_path / "local", shard_pool, get_scorer("clip_score"), LocalExecutor(1))
    marker = tmp_path / "killed"
    remote = _score(tmp_path / "ray", shard_pool, get_scorer("clip_score"), KillingRay(marker=marker))
    assert marker.exists(), "the worker was never killed"
    assert output_bytes(remote) == output_bytes(local)


@dataclass
class Probe(Task):
    """Records which actor process set up and ran each unit, and which GPU Ray gave it."""

    folder: Path
    resources: Resources = Resources(cpus=0.5, gpus=0.5)

    def setup(self) -> None:
        (self.folder / f"setup-{os.getpid()}").write_text("")

    def run(self, unit: int) -> tuple:
        return unit * 10, os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES")


def test_gpu_units_run_on_an_actor_pool_set_up_once_per_actor(tmp_path):
    results = RayExecutor().map(Probe(tmp_path), list(range(12)), progress=False)
    assert [r[0] for r in results] == [u * 10 for u in range(12)]
    pids = {r[1] for r in results}
    setups = {int(p.name.split("-")[1]) for p in tmp_path.glob("setup-*")}
    assert len(pids) == 2 and setups == pids  # two actors of half a GPU each, each set up exactly once
    assert {r[2] for r in results} == {"0"}  # both on the one (logical) GPU


def test_a_pixel_scorer_on_the_actor_pool_equals_local(tmp_path, shard_pool):
    from tests.harness.test_pixels import EmbeddingScorer, _micro_checkpoint, plugins_with

    cloudpickle.register_pickle_by_value(sys.modules[EmbeddingScorer.__module__])
    checkpoint = _micro_checkpoint(tmp_path / "micro.pt")
    plugins = plugins_with(EmbeddingScorer)
    assert EmbeddingScorer.resources.gpus > 0
    local = _score(tmp_path / "local", shard_pool, EmbeddingScorer(checkpoint=str(checkpoint)), LocalExecutor(1),
                   plugins)
    remote = _score(tmp_path / "ray", shard_pool, EmbeddingScorer(checkpoint=str(checkpoint)), RayExecutor(),
                    plugins)
    assert output_bytes(remote) == output_bytes(local)
    assert remote.manifest["unit_stats"]["images"] == 480 - remote.manifest["unit_stats"].get("missing_images", 0)


@dataclass
class FailOn(Task):
    """Raises a ValueError (not transient: never retried) on one unit."""

    bad: int
    resources: Resources = Resources()

    def run(self, unit: int) -> int:
        if unit == self.bad:
            raise ValueError(f"unit {unit} is bad input")
        return unit


@pytest.mark.parametrize("resources", [Resources(), Resources(cpus=0.5, gpus=0.5)], ids=["tasks", "actors"])
def test_a_units_own_error_stops_the_map_and_arrives_unwrapped(resources):
    with pytest.raises(ValueError, match="unit 3 is bad input"):
        RayExecutor().map(FailOn(3, resources), list(range(8)), progress=False)


def test_more_units_than_the_in_flight_window_all_come_back_in_order():
    from filterbench.harness.executor import FunctionTask
    from filterbench.harness.ray_executor import MIN_IN_FLIGHT

    units = list(range(3 * MIN_IN_FLIGHT + 5))
    assert RayExecutor().map(FunctionTask(lambda u: u * u), units, progress=False) == [u * u for u in units]
