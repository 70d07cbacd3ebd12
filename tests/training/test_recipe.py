"""The scale table's training rows, the tiny model configs and DataComp's argv."""

from __future__ import annotations

import pytest
from filterbench.harness.scales import FIXED_KNOBS, SCALES
from filterbench.harness.training.argv import build_argv, per_rank_batch
from filterbench.harness.training.plan import TrainError

# datacomp.md 4.1 (mlfoundations/datacomp scale_configs.py): model, global batch, lr, warmup, samples, beta2
DATACOMP = {
    "debug": ("ViT-B-32", 1024, 1e-4, 500, 128_000, None),
    "small": ("ViT-B-32", 4096, 5e-4, 500, 12_800_000, None),
    "medium": ("ViT-B-32", 4096, 5e-4, 500, 128_000_000, None),
    "large": ("ViT-B-16", 8192, 5e-4, 500, 1_280_000_000, None),
    "xlarge": ("ViT-L-14", 90112, 1e-3, 10_000, 12_800_000_000, 0.95),
}


@pytest.mark.parametrize("name", list(DATACOMP))
def test_datacomp_rows(name):
    s = SCALES[name]
    assert (s.model, s.batch_size, s.lr, s.warmup, s.samples_seen, s.beta2) == DATACOMP[name]
    assert (s.segments, s.workers, s.wd, s.image_size, s.cpu) == (5, 4, 0.2, 224, False)


@pytest.mark.parametrize("name", ["nano-xs", "nano"])
def test_nano_rows_use_the_registered_tiny_model(name):
    import open_clip
    from filterbench.harness.training import register_model_configs

    s = SCALES[name]
    assert s.model in register_model_configs()
    assert s.samples_seen % (s.segments * s.batch_size) == 0
    assert (s.precision, s.workers, s.image_size, s.cpu) == ("fp32", 1, 32, True)
    config = open_clip.get_model_config(s.model)
    assert config["vision_cfg"]["image_size"] == 32 and "hf_tokenizer_name" not in config["text_cfg"]


def test_the_nano_row_trains_a_modified_resnet_that_embeds_32px_images():
    import open_clip
    import torch
    from filterbench.harness.training import register_model_configs

    register_model_configs()
    model = open_clip.create_model(SCALES["nano"].model)
    # CLIP's RN family: a conv stem and attention pooling, not patches
    assert type(model.visual).__name__ == "ModifiedResNet"
    with torch.no_grad():
        images = model.encode_image(torch.zeros(2, 3, 32, 32))
        texts = model.encode_text(open_clip.get_tokenizer(SCALES["nano"].model)(["a red ball", "two cups"]))
    assert images.shape == texts.shape == (2, 128)
    assert sum(p.numel() for p in model.visual.parameters()) < 2_000_000


def test_overriding_a_fixed_knob_makes_a_run_unofficial():
    nano = SCALES["nano-xs"]
    assert nano.with_overrides(name="nano-xs")[1] is True
    for knob, value in (("batch_size", 64), ("workers", 2), ("samples_seen", 640)):
        assert knob in FIXED_KNOBS
        assert nano.with_overrides(**{knob: value})[1] is False


def test_argv_mirrors_datacomp_train_py():
    argv = build_argv(SCALES["small"], train_data="D/{00000000..00000009}.tar", samples_per_segment=2_560_000,
                      logs="OUT", name="EXP", seed=0, world_size=8)
    expected = ["--save-frequency", "0", "--ddp-static-graph", "--local-loss", "--gather-with-grad",
                "--grad-checkpointing", "--train-data", "D/{00000000..00000009}.tar", "--train-num-samples",
                "2560000", "--warmup", "500", "--dataset-type", "webdataset", "--precision", "amp", "--workers", "4",
                "--model", "ViT-B-32", "--batch-size", "512", "--epochs", "5", "--lr", "0.0005", "--logs", "OUT",
                "--name", "EXP", "--seed", "0", "--accum-freq", "1", "--log-every-n-steps", "100",
                "--save-most-recent", "--resume", "latest", "--dataset-resampled"]
    assert argv == expected
    xlarge = build_argv(SCALES["xlarge"], train_data="D", samples_per_segment=1, logs="O", name="E", seed=0,
                        world_size=512)
    assert xlarge[xlarge.index("--beta2") + 1] == "0.95" and xlarge[xlarge.index("--batch-size") + 1] == "176"


def test_cpu_and_planned_argv():
    argv = build_argv(SCALES["nano-xs"], train_data="D", samples_per_segment=3200, logs="O", name="E", seed=3,
                      resampled=False, device="cpu")
    assert "--grad-checkpointing" not in argv and "--dataset-resampled" not in argv
    assert argv[argv.index("--wd") + 1] == "0.1" and argv[argv.index("--device") + 1] == "cpu"
    assert argv[-2:] == ["--report-to", ""]


def test_an_indivisible_global_batch_is_refused():
    assert per_rank_batch(SCALES["small"], 4, 2) == 512
    with pytest.raises(TrainError, match="not divisible by 3 processes"):
        per_rank_batch(SCALES["small"], 3)
