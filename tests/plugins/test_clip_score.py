import numpy as np
import pyarrow.parquet as pq
import pytest

from filterbench import get_scorer
from filterbench.harness.pool import Pool
from filterbench.harness.stages.score import run_score
from filterbench.testing import check_scorer


@pytest.mark.parametrize("model", ["l14", "b32"])
def test_equals_datacomp_parquet_column_within_fp16_tolerance(tiny_pool, store, model):
    artifact = run_score(store, Pool(tiny_pool), get_scorer("clip_score", model=model), progress=False)
    for stem in artifact.manifest["parts"]:
        ours = pq.read_table(artifact.path / f"parts/{stem}.parquet").column("score").to_numpy()
        theirs = pq.read_table(tiny_pool / "metadata" / f"{stem}.parquet").column(
            f"clip_{model}_similarity_score").to_numpy()
        assert np.abs(ours - theirs).max() < 1e-3  # fp16 features: ~3 significant digits
        assert not np.array_equal(ours, np.zeros_like(ours))


def test_metadata_source_reads_the_column_exactly(tiny_pool, store):
    artifact = run_score(store, Pool(tiny_pool), get_scorer("clip_score", model="b32", source="metadata"),
                         progress=False)
    stem = artifact.manifest["parts"][0]
    ours = pq.read_table(artifact.path / f"parts/{stem}.parquet").column("score").to_numpy()
    theirs = pq.read_table(tiny_pool / "metadata" / f"{stem}.parquet").column("clip_b32_similarity_score")
    assert np.array_equal(ours, theirs.to_numpy())


def test_unknown_feature_set_names_the_npz(tiny_pool, store):
    from filterbench.harness.errors import PoolError

    with pytest.raises(PoolError, match=r"\.npz: missing array\(s\) \['h14_img', 'h14_txt'\]"):
        run_score(store, Pool(tiny_pool), get_scorer("clip_score", model="h14"), progress=False)


def test_conformance(tiny_pool, tmp_path):
    check_scorer(get_scorer("clip_score"), tmp_path, pool=tiny_pool)
