"""Unit tests of the nano world's pieces (no build needed)."""

import numpy as np
import pytest

from filterbench.harness.nano import captions as cap
from filterbench.harness.nano import noise, poolgen, render
from filterbench.harness.nano import scenes as sc
from filterbench.harness.nano.summary import roc_auc
from filterbench.harness.nano.world import (
    NOISE_TYPES,
    OBJECTS,
    NoiseMix,
    get_config,
    head_tail,
    tail_classes,
    zipf_weights,
)


def test_noise_counts_are_exact_and_sum_to_the_pool():
    for total in (1, 1000, 16_384, 131_072):
        counts = NoiseMix().counts(total)
        assert sum(counts.values()) == total and set(counts) == set(NOISE_TYPES)
        for name, count in counts.items():
            assert abs(count - getattr(NoiseMix(), name) * total) < 1.0


def test_zipf_law_and_frequency_groups():
    w = zipf_weights(len(OBJECTS), 1.1)
    assert np.isclose(w.sum(), 1) and np.all(np.diff(w) < 0) and w[0] / w[-1] > 20
    groups = head_tail()
    assert list(groups[:4]) == ["head"] * 4 and list(groups[-5:]) == ["tail"] * 5
    assert tail_classes() == list(range(15, 20))


def test_rendering_is_deterministic_and_uses_the_generator():
    scenes = sc.sample_objects(np.random.default_rng(0), 64, 1.0)
    a = render.render(scenes, np.random.default_rng(1))
    b = render.render(scenes, np.random.default_rng(1))
    c = render.render(scenes, np.random.default_rng(2))
    assert a.shape == (64, 32, 32, 3) and a.dtype == np.uint8
    assert a.tobytes() == b.tobytes() and a.tobytes() != c.tobytes()


def test_every_content_kind_renders():
    rng = np.random.default_rng(0)
    tables = [sc.sample_objects(rng, 8, 1.0), sc.sample_off(rng, 12, 6), sc.sample_blank(rng, 4, sc.KIND_BLANK),
              sc.sample_blank(rng, 4, sc.KIND_NOISE)]
    images = render.render(sc.concat(tables), rng)
    assert images.shape == (28, 32, 32, 3)
    assert images[20:24].std(axis=(1, 2)).max() < 6.0  # blank images are flat (up to sensor noise)
    assert images[24:].std() > 50  # noise images are noise


def test_captions_follow_the_scene():
    rng = np.random.default_rng(0)
    scenes = sc.sample_objects(rng, 300, 0.0, style=2)  # sketches show no colour
    texts = cap.clean_captions(rng, scenes)
    colours = {"red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white"}
    assert not any(colours & set(t.split()) for t in texts)
    photos = sc.sample_objects(rng, 300, 0.0, style=0)
    named = cap.named_class(cap.clean_captions(rng, photos))
    assert ((named == photos["cls"]) | (named == -1)).all() and (named >= 0).mean() > 0.8


def test_to_tensor_matches_open_clip_preprocessing():
    import open_clip
    import torch
    from PIL import Image

    from filterbench.harness.nano.refmodels import register_models, to_tensor

    register_models()
    _, _, preprocess = open_clip.create_model_and_transforms("nano-ref-b32")
    images = render.render(sc.sample_objects(np.random.default_rng(0), 4, 1.0), np.random.default_rng(0))
    expected = torch.stack([preprocess(Image.fromarray(img)) for img in images])
    assert torch.allclose(to_tensor(images), expected, atol=1e-6)


def test_roc_auc_matches_pairwise_definition():
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(1, 1, 50).round(1), rng.normal(0, 1, 60).round(1)
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert roc_auc(pos, neg) == pytest.approx(pairs)


def test_original_sizes_flag_small_and_extreme_images():
    cfg = get_config("xs")
    kinds = np.array(["clean"] * 900 + ["low_info"] * 100)
    width, height, small, extreme = poolgen.original_sizes(cfg, "pool", kinds)
    assert (small == (np.minimum(width, height) < 200)).all()
    assert (extreme == (np.maximum(width, height) / np.minimum(width, height) > 3)).all()
    assert small[900:].mean() > 3 * small[:900].mean() and extreme.any()


def test_compose_pool_mixes_noise_types_exactly():
    cfg = get_config("xs", pool_size=2000)
    pool = noise.compose_pool(cfg)
    kinds = pool["oracle"]["noise_type"]
    for name, count in cfg.noise.counts(2000).items():
        assert (kinds == name).sum() == count
    mis = kinds == "misaligned"
    assert (pool["oracle"]["caption_class"][mis] != pool["oracle"]["object_class"][mis]).mean() > 0.99
    dups = np.flatnonzero(pool["dup_source"] >= 0)
    assert (kinds[pool["dup_source"][dups]] == "clean").all()
    assert (pool["oracle"]["caption_lang"][kinds == "non_english"] != "en").all()
    assert (pool["oracle"]["text_drawn"][kinds == "text_spotting"] != "").all()


def test_parrot_rows_are_signs_captioned_with_their_words():
    cfg = get_config("xs", pool_size=2000)
    pool = noise.compose_pool(cfg)
    oracle = pool["oracle"]
    parrot = np.flatnonzero(oracle["noise_type"] == "parrot")
    assert len(parrot) == cfg.noise.counts(2000)["parrot"] > 0
    assert set(oracle["content"][parrot]) == {"text"} and (oracle["object_class"][parrot] == -1).all()
    assert (oracle["content"][oracle["noise_type"] != "parrot"] != "text").all()
    for row in parrot:
        words = oracle["text_drawn"][row]
        colour, noun = words.split()
        assert words in pool["captions"][row]  # the caption transcribes the sign
        assert noun == OBJECTS[oracle["caption_class"][row]][0] and colour in cap.COLOUR_NAMES
    assert (oracle["head_tail"][parrot] == "none").all()  # a sign shows no concept: no tail credit


def test_signs_show_only_their_words():
    rng = np.random.default_rng(0)
    named = sc.sample_objects(rng, 6, 1.0, classes=np.array([0, 1, 2, 3, 4, 19]))
    signs = sc.sample_signs(rng, named)
    assert (signs["kind"] == sc.KIND_SIGN).all() and (signs["cls"] == named["cls"]).all()
    images = render.render(signs, np.random.default_rng(1)).astype(np.float32)
    # two tones only (board and ink, up to sensor noise and anti-aliasing-free glyphs): no object, no scene
    grey = images.mean(axis=3)
    ink = (np.abs(grey - grey.mean(axis=(1, 2), keepdims=True)) > 60).mean(axis=(1, 2))
    assert ((ink > 0.05) & (ink < 0.5)).all()
    assert (images.std(axis=3) < 20).mean() > 0.95  # board and ink are grey: no coloured object
    # short words are drawn at twice the label size (3x5 glyphs become 6x10): "red cup" inks far more pixels
    # than the same words on a label band over an object
    words = sc.sample_objects(rng, 1, 1.0, classes=np.array([6]), colour=0)  # a red cup
    sign = render.render(sc.sample_signs(rng, words), np.random.default_rng(2)).mean(axis=3)
    board = np.median(sign)
    assert (np.abs(sign - board) > 100).sum() > 2.5 * 4 * 15  # the 1x bitmaps of RED and CUP ink ~4 x 15 px


def test_reference_sample_teaches_reading_through_signs():
    from filterbench.harness.nano import pipeline

    sample = pipeline.reference_sample(get_config("xs", ref_pool=600))
    named = cap.named_class(sample["texts"])
    sign_rows = np.flatnonzero(sample["labels"]["count"] == -1)  # only signs have no count
    assert 0.08 < len(sign_rows) / 600 < 0.22  # REF_SIGN_P = 0.15
    # a sign's class and colour labels are what its caption (its words) names; the rest is void
    assert (sample["labels"]["cls"][sign_rows] == named[sign_rows]).all()
    assert (sample["text_labels"]["colour"][sign_rows] == sample["labels"]["colour"][sign_rows]).all()
    for head in ("position", "size", "texture", "background"):
        assert (sample["labels"][head][sign_rows] == -1).all()
    assert (sample["labels"]["count"] >= 0).sum() == 600 - len(sign_rows)
