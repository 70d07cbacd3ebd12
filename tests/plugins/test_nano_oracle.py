import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from filterbench import get_sampler, get_scorer
from filterbench.harness.errors import PluginError
from filterbench.harness.pool import Pool
from filterbench.harness.stages.sample import run_sample
from filterbench.harness.stages.score import run_score
from filterbench.harness.uids import pairs_to_hex, read_subset
from filterbench.testing import fabricate_pool


def test_oracle_recipe_keeps_exactly_the_clean_pairs(tmp_path, store):
    pool = Pool(fabricate_pool(tmp_path / "world" / "pool", rows=300, images=False, seed=2))
    uids = [u for s in pool.shards for u in pool.read_metadata(s)["uid"]]
    kinds = np.random.default_rng(0).choice(["clean", "misaligned", "boilerplate"], size=len(uids))
    (tmp_path / "world" / "oracle").mkdir()
    pq.write_table(pa.table({"uid": uids, "noise_type": kinds.tolist()}), tmp_path / "world/oracle/part-0.parquet")
    scores = run_score(store, pool, get_scorer("nano_oracle"), progress=False)
    assert scores.manifest["fit_stats"]["clean_fraction"] == pytest.approx((kinds == "clean").mean())
    selection = run_sample(store, get_sampler("threshold", threshold=0.5, column="nano_oracle.clean"), [scores])
    kept = set(pairs_to_hex(read_subset(selection.path / "subset.npy")).tolist())
    assert kept == {u for u, k in zip(uids, kinds) if k == "clean"}


def test_oracle_needs_ground_truth(tiny_pool, store):
    with pytest.raises(PluginError, match=r"scorer 'nano_oracle': no ground truth at .*oracle"):
        run_score(store, Pool(tiny_pool), get_scorer("nano_oracle"), progress=False)
