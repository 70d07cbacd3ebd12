"""Content keys: whatever changes an artifact changes its key, checked in one store (so a stale cache hit, not
just a different key in a fresh store, is what would fail), and a key never depends on how inputs were built.

Each test kills a mutant of the mutation pass (tools/mutation_pass.py, docs/reliability.md) that every other
test let through.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from filterbench import get_sampler, get_scorer
from filterbench.harness.contract import Budget, Needs, Params, ScoreInput, Scorer
from filterbench.harness.hashing import canonical_json, content_key
from filterbench.harness.hookspecs import hookimpl
from filterbench.harness.manager import Plugins
from filterbench.harness.pool import Pool
from filterbench.harness.stages.sample import run_sample
from filterbench.harness.stages.score import run_score


def _length_scorer(version: int) -> type[Scorer]:
    class CaptionLength(Scorer):
        """Caption length; version 2 counts words instead (an upgraded plugin, same name)."""

        name = "caption_length_dep"
        needs = Needs(metadata=("text",))

        def score_batch(self, batch, ctx):
            texts = batch.metadata["text"]
            return np.array([len(t) if version == 1 else len(t.split()) for t in texts], np.float32)

    CaptionLength.version = version
    return CaptionLength


class Consumer(Scorer):
    """Consumes caption_length_dep; its own identity never changes."""

    name = "length_consumer"

    def required_scores(self):
        return (ScoreInput("caption_length_dep", {}),)

    def score_batch(self, batch, ctx):
        return batch.scores["caption_length_dep.score"] * 2


def _plugins(dep: type[Scorer]) -> Plugins:
    class Registration:
        @hookimpl
        def register_scorers(self, register):
            register(dep)
            register(Consumer)

    return Plugins(load_entry_points=False, extra=(("keys_test", Registration()),))


def test_a_consumer_gets_a_new_key_when_a_score_it_consumes_changes(tiny_pool, store):
    """Mutant 'the score key leaves out the consumed scores': upgrading a consumed plugin must not reuse the
    consumer's artifact computed from the old inputs."""
    pool = Pool(tiny_pool)
    old = run_score(store, pool, Consumer(), plugins=_plugins(_length_scorer(1)), progress=False)
    new = run_score(store, pool, Consumer(), plugins=_plugins(_length_scorer(2)), progress=False)
    assert new.key != old.key and new.manifest["requires"] != old.manifest["requires"]
    again = run_score(store, pool, Consumer(), plugins=_plugins(_length_scorer(1)), progress=False)
    assert again.path == old.path  # and the same inputs are a cache hit


def test_a_selection_gets_a_new_key_for_another_budget(tiny_pool, store):
    """Mutant 'the selection key leaves out the budget': same store, same sampler and scores, other budget."""
    scores = run_score(store, Pool(tiny_pool), get_scorer("clip_score"), progress=False)
    sampler = get_sampler("soft_cap")
    small = run_sample(store, sampler, [scores], budget=Budget(600, 1, 600))
    large = run_sample(store, sampler, [scores], budget=Budget(1200, 1, 600))
    assert large.key != small.key
    assert int(np.load(large.path / "counts.npy").sum()) == 1200
    assert run_sample(store, sampler, [scores], budget=Budget(600, 1, 600)).path == small.path


class SeededFit(Scorer):
    """A fit whose state depends on the seed (a random init)."""

    name = "seeded_fit"
    needs = Needs(metadata=("text",))

    class Params(Params):
        scale: float = 1.0

    def fit(self, pool, ctx):
        np.save(ctx.state_dir / "w.npy", ctx.rng.normal(size=1))

    def score_batch(self, batch, ctx):
        w = float(np.load(ctx.state_dir / "w.npy")[0])
        return np.full(len(batch), w * self.params.scale, np.float32)


def test_a_fit_gets_a_new_key_for_another_seed(tiny_pool, store):
    """Mutant 'the fit key leaves out the seed': the score key has the seed, so a fit reused across seeds would
    silently give every seed the first seed's model."""
    class Registration:
        @hookimpl
        def register_scorers(self, register):
            register(SeededFit)

    plugins = Plugins(load_entry_points=False, extra=(("keys_fit_test", Registration()),))
    pool = Pool(tiny_pool)
    zero = run_score(store, pool, SeededFit(), seed=0, plugins=plugins, progress=False)
    one = run_score(store, pool, SeededFit(), seed=1, plugins=plugins, progress=False)
    assert one.manifest["fit"]["key"] != zero.manifest["fit"]["key"]
    assert len(list((store.root / "fits").glob("seeded_fit-*"))) == 2
    assert (one.path / "fit/w.npy").read_bytes() != (zero.path / "fit/w.npy").read_bytes()


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                                max_size=4), max_leaves=20)


@given(st.dictionaries(st.text(max_size=6), JSON, max_size=6))
def test_a_key_does_not_depend_on_the_order_inputs_were_built_in(inputs):
    """Mutant 'canonical JSON keeps dict order': the same inputs assembled in another order (a refactor, another
    Python) must keep every existing artifact's key."""
    def reverse(value):
        if isinstance(value, dict):
            return {k: reverse(value[k]) for k in reversed(list(value))}
        if isinstance(value, list):
            return [reverse(v) for v in value]
        return value

    assert canonical_json(reverse(inputs)) == canonical_json(inputs)
    assert content_key(reverse(inputs)) == content_key(inputs)


def test_a_pixel_scorers_fit_key_leaves_out_how_it_scores():
    """Mutant 'scoring-only params enter the fit key': re-scoring with another batch size or precision would
    re-train the filter network (minutes to hours) for the same weights."""
    from filterbench.plugins.dfn import DfnScorer

    base = DfnScorer()
    rescoring = DfnScorer(batch_size=16, precision="fp32", device="cpu", decode_workers=2)
    assert rescoring.fit_identity() == base.fit_identity()
    assert rescoring.identity() != base.identity()  # the score key does change: batches set float rounding
    assert DfnScorer(device="cpu", decode_workers=3).identity() == base.identity()  # how it runs: no key
    assert DfnScorer(steps=5).fit_identity() != base.fit_identity()
