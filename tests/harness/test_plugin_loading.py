"""Entry-point discovery, isolation of broken plugins, duplicates and "did you mean"."""

import pytest

from filterbench.harness.errors import PluginError
from filterbench.harness.manager import Plugins

OUT_OF_TREE = '''
import numpy as np
import filterbench
from filterbench import Needs, Params, Scorer


class CaptionWords(Scorer):
    """Number of whitespace words in the caption."""

    name = "caption_words"
    version = 2
    needs = Needs(metadata=("text",))

    class Params(Params):
        scale: float = 1.0

    def score_batch(self, batch, ctx):
        return np.array([len(t.split()) for t in batch.metadata["text"]], dtype=np.float32) * self.params.scale


@filterbench.hookimpl
def register_scorers(register):
    register(CaptionWords)
'''


@pytest.fixture()
def site(plugin_site):
    return plugin_site


def test_out_of_tree_plugin_is_found_and_runs(site, tiny_pool, store):
    from filterbench.harness.pool import Pool
    from filterbench.harness.stages.score import run_score

    site("fb-caption-words", "fb_caption_words", OUT_OF_TREE)
    plugins = Plugins()
    assert "caption_words" in plugins.scorers and "clip_score" in plugins.scorers
    assert plugins.infos["fb_caption_words"].distribution == "fb-caption-words"
    scorer = plugins.scorer_class("caption_words")(scale=2.0)
    artifact = run_score(store, Pool(tiny_pool), scorer, plugins=plugins, progress=False)
    assert artifact.manifest["plugin"] == {"name": "caption_words", "version": 2, "plugin": "fb_caption_words",
                                           "distribution": "fb-caption-words", "distribution_version": "0.1"}
    from filterbench.testing import check_scorer

    check_scorer(scorer, store.root / "conformance", pool=tiny_pool, plugins=plugins)


def test_broken_plugin_is_listed_and_fatal_only_when_needed(site, monkeypatch):
    site("fb-broken", "fb_broken", "raise ImportError('no module named torchvision_v99')\n")
    plugins = Plugins()
    assert "ImportError: no module named torchvision_v99" in plugins.infos["fb_broken"].error
    assert "clip_score" in plugins.scorers  # the others still load
    plugins.scorer_class("clip_score")
    with pytest.raises(PluginError, match=r"unknown scorer 'fancy'; these plugins failed to load .*fb_broken"):
        plugins.scorer_class("fancy")
    monkeypatch.setenv("FILTERBENCH_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match=r"plugin 'fb_broken' \(fb_broken\) failed to load"):
        Plugins()


def test_duplicate_names_name_both_owners(site):
    source = OUT_OF_TREE.replace('name = "caption_words"', 'name = "clip_score"')
    site("fb-dup", "fb_dup", source)
    with pytest.raises(PluginError, match=r"duplicate scorer name 'clip_score': registered by plugin '(clip_score|fb_dup)' "
                                          r"and again by plugin '(clip_score|fb_dup)'"):
        Plugins().scorers


def test_did_you_mean_and_disable(monkeypatch):
    plugins = Plugins()
    with pytest.raises(PluginError, match=r"unknown sampler 'top_fractoin'; did you mean 'top_fraction'"):
        plugins.sampler_class("top_fractoin")
    monkeypatch.setenv("FILTERBENCH_DISABLE_PLUGINS", "clip_score")
    assert "clip_score" not in Plugins().scorers


def test_registering_a_non_scorer_fails_loudly():
    class NotAScorer:
        name = "nope"

    class Plugin:
        import filterbench as _fb

        @_fb.hookimpl
        def register_scorers(register):  # noqa: N805 - pluggy calls it as a plain function on the object
            register(NotAScorer)

    plugins = Plugins(load_entry_points=False, extra=(("inline", Plugin),))
    with pytest.raises(PluginError, match="plugin 'inline' registered .*NotAScorer.* not a subclass of Scorer"):
        plugins.scorers
