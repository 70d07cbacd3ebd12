"""DataComp's metadata baselines (basic, text-based, LAION-2B) against independent computations of its rules.

Each selection goes through the real score and sample stages on a fabricated pool and must equal a direct
recomputation of DataComp's rule (``baselines/apply_filter.py``) written here from the rule's text: py3langid
called directly for "English", ``str.split``/``len`` for captions, the parquet's original sizes, a
hand-checked first-synset table for WordNet, and the parquet's ``clip_b32_similarity_score`` column.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import py3langid
import pyarrow.parquet as pq
import pytest
import torch  # noqa: F401  (imported once here so forked workers do not each import it)

from filterbench.harness.contract import Budget
from filterbench.harness.errors import ParamsError
from filterbench.harness.manager import Plugins
from filterbench.harness.pool import Pool
from filterbench.harness.recipes import check_recipe, load_recipe
from filterbench.harness.stages.sample import run_sample
from filterbench.harness.stages.score import run_score
from filterbench.harness.store import Store
from filterbench.harness.testing import check_scorer, fabricate_pool


REPO = Path(__file__).resolve().parents[2]
MODULES = ("language", "datacomp_filters", "image_clusters", "negcliploss", "normsim", "chain_sampler",
           "clip_score", "basic_samplers")

# WordNet 3.0 offset of nltk's synsets(token)[0] for every token the English captions below can hold, read off
# index.noun/.verb/.adj by hand (first listed offset of the first POS whose morphy base exists)
FIRST_SYNSET = {
    "a": 13658027, "photo": 3925226, "of": None, "the": None, "with": None, "on": 1651196, "two": 13743269,
    "dog": 2084071, "dogs": 2084071, "Dog": 2084071, "Dog,": None, "dogs!": None, "cat": 2121620,
    "cats": 2121620, "beach": 9217230, "bicycle": 2834778, "geese": 1855672, "snow": 11508382,
    "apples": 7739125, "children": 9917593, "night": 15167027, "sunset": 15169248, "red": 4962784,
    "running": 558883, "small": 5559023, "large": 5096191,
}
FOREIGN = ["un chien sur la plage avec un ballon rouge", "ein Hund am Strand mit einem roten Ball",
           "una casa grande en la ciudad", "", "IMG_2031.JPG"]
SIZES = [(200, 200), (199, 800), (800, 199), (600, 200), (601, 200), (200, 600), (200, 601), (1024, 768),
         (0, 300), (3000, 1000), (3001, 1000)]


def plugins() -> Plugins:
    return Plugins(load_entry_points=False, extra=tuple((m, f"filterbench.plugins.{m}") for m in MODULES))


def make_captions(rows: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    vocab = sorted(FIRST_SYNSET)
    out = []
    for i in range(rows):
        if i % 7 == 3:
            out.append(FOREIGN[i % len(FOREIGN)])
        else:
            words = rng.choice(vocab, size=int(rng.integers(1, 7)))
            out.append(("\n" if i % 11 == 5 else " ").join(words))
    return out


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Path:
    rows = 160
    sizes = [SIZES[i % len(SIZES)] for i in range(rows)]
    return fabricate_pool(tmp_path_factory.mktemp("dc") / "pool", rows=rows, shards=2,
                          texts=make_captions(rows), sizes=sizes, feature_sets={"b32": 16}, images=False)


def read_pool(pool: Path) -> dict[str, np.ndarray]:
    tables = [pq.read_table(p).to_pydict() for p in sorted((pool / "metadata").glob("*.parquet"))]
    return {k: np.array([v for t in tables for v in t[k]]) for k in tables[0]}


def identifier():
    """py3langid's identifier (bundled model, normalised probabilities), shared with the plugin (one load)."""
    from filterbench.plugins.language import get_detector

    ident = get_detector("langid", None).identifier
    assert isinstance(ident, py3langid.langid.LanguageIdentifier)
    return ident


def english(texts) -> np.ndarray:
    """DataComp's rule (top-1 language is English), with py3langid called directly."""
    return np.array([identifier().classify(str(t))[0] == "en" for t in texts])


def select(pool: Path, tmp: Path, scorers: list, sampler) -> np.ndarray:
    store, pl = Store(tmp / "store"), plugins()
    artifacts = [run_score(store, Pool(pool), s, seed=0, workers=1, plugins=pl, progress=False)
                 for s in scorers]
    size = Pool(pool).size
    selection = run_sample(store, sampler, artifacts, Budget(size, 1, size), seed=0, plugins=pl)
    return np.load(selection.path / "counts.npy").astype(bool)


def test_basic_filter_equals_datacomp_rule(pool, tmp_path):
    meta = read_pool(pool)
    texts, w, h = meta["text"], meta["original_width"], meta["original_height"]
    caption = np.array([len(t.split()) > 2 and len(t) > 5 for t in texts])
    short, long = np.minimum(w, h), np.maximum(w, h)
    with np.errstate(divide="ignore"):
        image = (short >= 200) & (long / short <= 3.0)
    expected = english(texts) & caption & image
    pl = plugins()
    got = select(pool, tmp_path, [pl.scorer_class("basic_filter")()],
                 pl.sampler_class("threshold")(column="basic_filter.keep", threshold=0.5))
    assert 0 < expected.sum() < len(expected)
    np.testing.assert_array_equal(got, expected)


def test_a_runs_scoring_compute_includes_the_scorers_it_consumed(pool, tmp_path):
    """basic_filter reads language_id's column: a record must count both scorers' compute (and versions)."""
    from filterbench.harness.recording import with_dependencies

    store, pl = Store(tmp_path / "store"), plugins()
    basic = run_score(store, Pool(pool), pl.scorer_class("basic_filter")(), plugins=pl, progress=False)
    chain = with_dependencies(store, [basic])
    assert [a.manifest["plugin"]["name"] for a in chain] == ["basic_filter", "language_id"]
    assert chain[1].key in basic.manifest["requires"] and chain[1].manifest["cost"]["cpu_s"] > 0
    assert with_dependencies(store, [basic, chain[1]]) == chain  # each artifact once


def test_text_based_equals_datacomp_rule(pool, tmp_path):
    import timm  # a core dependency: it ships ImageNet-21k's synset list
    from filterbench.plugins.wordnet import WordNetError, find_wordnet_dir

    try:
        find_wordnet_dir()
    except WordNetError:
        pytest.skip("WordNet 3.0 data not installed (apt-get install wordnet-base)")
    ids_file = Path(timm.__file__).parent / "data/_info/imagenet21k_goog_synsets.txt"
    in21k = {int(line.strip()[1:]) for line in ids_file.read_text().splitlines() if line.strip()}
    texts = read_pool(pool)["text"]
    is_en = english(texts)
    hit = np.array([en and any(FIRST_SYNSET[w] in in21k for w in t.split()) for t, en in zip(texts, is_en)])
    pl = plugins()
    got = select(pool, tmp_path, [pl.scorer_class("text_based")()],
                 pl.sampler_class("threshold")(column="text_based.keep", threshold=0.5))
    assert 0 < hit.sum() < is_en.sum()
    np.testing.assert_array_equal(got, hit)


def test_wordnet_first_synsets_known_answers():
    from filterbench.plugins.wordnet import WordNet, WordNetError, find_wordnet_dir

    try:
        wordnet = WordNet(find_wordnet_dir())
    except WordNetError:
        pytest.skip("WordNet 3.0 data not installed (apt-get install wordnet-base)")
    for token, offset in FIRST_SYNSET.items():
        assert wordnet.first_synset_offset(token) == offset, token
    assert wordnet.first_synset_offset("mice") == 2330245  # noun.exc: mice -> mouse
    # nltk 3.8.1 (DataComp's) re-applies the rules, dogss > dogs > dog, before trying the next POS
    assert wordnet.first_synset_offset("dogss") == 2084071
    assert wordnet.first_synset_offset("sisss") == 10602985  # noun sis; nltk >= 3.9 gives the verb siss


def test_text_based_with_a_word_vocabulary(pool, tmp_path):
    vocab = tmp_path / "concepts.txt"
    vocab.write_text("# nano-style vocabulary\nDog\nbeach\n")
    texts = read_pool(pool)["text"]
    words = [{w.lower().strip("!,.") for w in t.split()} for t in texts]
    expected = english(texts) & np.array([bool(ws & {"dog", "beach"}) for ws in words])
    pl = plugins()
    got = select(pool, tmp_path, [pl.scorer_class("text_based")(concepts=str(vocab))],
                 pl.sampler_class("threshold")(column="text_based.keep", threshold=0.5))
    np.testing.assert_array_equal(got, expected)


def test_laion2b_recipe_equals_datacomp_rule(pool, tmp_path):
    meta = read_pool(pool)
    expected = english(meta["text"]) & (meta["clip_b32_similarity_score"] >= 0.28)
    scorers, sampler = recipe_plugins("laion2b")
    got = select(pool, tmp_path, scorers, sampler)
    assert 0 < expected.sum()
    np.testing.assert_array_equal(got, expected)


def datacomp_clip_fraction(scores: np.ndarray, fraction: float) -> np.ndarray:
    """DataComp's get_threshold and load_uids_with_clip_score_helper, from their text: the threshold is the
    descending-sorted score at index int(N * fraction), and every uid scoring at least that is kept."""
    threshold = -np.sort(-scores)[int(len(scores) * fraction)]
    return scores >= threshold


@pytest.mark.parametrize(("name", "model"), [("clip_score_l14_top30", "l14"), ("clip_score_b32_top30", "b32")])
def test_clip_score_top30_recipes_select_datacomp_uids(tmp_path, name, model):
    pool = fabricate_pool(tmp_path / "pool", rows=157, shards=2, feature_sets={"b32": 16, "l14": 16},
                          images=False)
    scores = read_pool(pool)[f"clip_{model}_similarity_score"]
    scores[[3, 40, 99]] = np.sort(scores)[-48]  # three ties at DataComp's threshold: all three are kept
    expected = datacomp_clip_fraction(scores, 0.3)
    _rewrite_column(pool, f"clip_{model}_similarity_score", scores)
    scorers, sampler = recipe_plugins(name)
    got = select(pool, tmp_path, scorers, sampler)
    assert expected.sum() == int(157 * 0.3) + 3  # one more than floor(0.3 N), plus the two extra ties
    np.testing.assert_array_equal(got, expected)


def _rewrite_column(pool: Path, column: str, values: np.ndarray) -> None:
    """Replace one metadata column across the pool's parquet files (row order kept)."""
    import pyarrow as pa

    start = 0
    for path in sorted((pool / "metadata").glob("*.parquet")):
        table = pq.read_table(path)
        part = pa.array(values[start:start + table.num_rows].astype(np.float32))
        pq.write_table(table.set_column(table.schema.get_field_index(column), column, part), path)
        start += table.num_rows


def test_language_id_conformance_and_columns(pool, tmp_path):
    artifact = check_scorer(plugins().scorer_class("language_id")(), tmp_path, pool=pool, plugins=plugins())
    assert artifact.manifest["columns"] == ["match", "prob"]
    check_scorer(plugins().scorer_class("basic_filter")(), tmp_path / "basic", pool=pool, plugins=plugins())


def test_fasttext_token_count_follows_fasttext():
    from filterbench.plugins.language import fasttext_token_count

    cases = {"a b": 2, "a\nb": 3, "a \n": 2, "\n": 1, "  ": 0, "": 0, "a\tb\x0bc\x0cd\re\x00f": 6,
             "a\u00a0b": 1, "x  y   z": 3}
    for text, count in cases.items():
        assert fasttext_token_count(text) == count, repr(text)


def test_fasttext_backend_uses_datacomp_conventions(tmp_path, monkeypatch):
    """fastText path on a stand-in model: newlines become spaces, the top-1 label decides, prob of `en`."""
    from filterbench.plugins import language

    seen = []

    class Model:
        class f:  # mirrors fasttext's attribute name
            @staticmethod
            def multilinePredict(lines, k, threshold, errors):
                seen.extend(lines)
                labels = [["__label__en", "__label__fr"] if "dog" in ln else ["__label__fr", "__label__en"]
                          for ln in lines]
                return labels, [[0.9, 0.1] if "dog" in ln else [0.7, 0.2] for ln in lines]

    (tmp_path / "lid.176.bin").write_bytes(b"stand-in")
    monkeypatch.setitem(sys.modules, "fasttext", types.SimpleNamespace(load_model=lambda path: Model()))
    monkeypatch.setenv("FILTERBENCH_FASTTEXT_DIR", str(tmp_path))
    monkeypatch.setattr(language, "_DETECTORS", {})
    top, prob = language.get_detector("fasttext", None).detect(["a dog\non grass", "un chat"], "en")
    assert seen == ["a dog on grass\n", "un chat\n"]
    assert top == ["en", "fr"]
    np.testing.assert_allclose(prob, [0.9, 0.2])
    with pytest.raises(ParamsError, match="not found"):
        language.get_detector("fasttext", "missing.bin")


RECIPES = ("basic_filter", "text_based", "image_based", "image_based_clip_score_l14_top30", "laion2b",
           "negcliploss_normsim", "clip_score_l14_top30", "clip_score_b32_top30")


def recipe_plugins(name: str) -> tuple[list, object]:
    """A recipe's scorers and sampler, instantiated with its params (the recipe loader's own checks first)."""
    recipe = load_recipe(REPO / f"baselines/{name}.yaml")
    pl = plugins()
    check_recipe(recipe, pl)
    scorers = [pl.scorer_class(s.name)(**s.params) for s in recipe.scorers]
    return scorers, pl.sampler_class(recipe.sampler.name)(**recipe.sampler.params)


@pytest.mark.parametrize("name", RECIPES)
def test_recipes_name_registered_plugins_with_valid_params(name):
    recipe = load_recipe(REPO / f"baselines/{name}.yaml")
    assert recipe.name == name and recipe.version >= 1 and {"nano", "small", "medium"} <= set(recipe.scales)
    scorers, sampler = recipe_plugins(name)
    provided = {f"{s.name}.{c}" for s in scorers for c in s.output_columns()}
    assert set(sampler.score_columns()) <= provided
