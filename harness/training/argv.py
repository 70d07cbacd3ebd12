"""open_clip_train's argv for a scale, built the way DataComp's ``train.py`` builds it.

DataComp (``mlfoundations/datacomp: train.py``) always passes ``--save-frequency 0 --ddp-static-graph
--local-loss --gather-with-grad --grad-checkpointing --train-data PATTERN --train-num-samples
samples_seen//checkpoints --warmup W --dataset-type webdataset --precision P --workers J --model M
--batch-size global//(world*accum) --epochs checkpoints --lr LR --logs OUT --name EXP --seed S --accum-freq A
--log-every-n-steps K --save-most-recent --resume latest --dataset-resampled`` and ``--beta2 0.95`` for
xlarge.  We pass the same, with these differences, each on purpose:

- the planned modes (multiset, schedule) drop ``--dataset-resampled`` and set ``--train-num-samples`` to the
  planned samples per segment (the launcher's loader feeds exactly those);
- CPU scales add ``--device cpu --report-to ''``, pass ``--wd`` (open_clip's default is 0.2, DataComp's
  value), and leave out ``--grad-checkpointing`` (it only trades compute for memory, which a 8 M-parameter
  model does not need; the maths is unchanged);
- a global batch that the processes do not divide is an error, not a silently smaller batch (DataComp trap 11).
"""

from __future__ import annotations

from filterbench.harness.scales import Scale
from filterbench.harness.training.plan import TrainError

OPEN_CLIP_DEFAULT_WD = 0.2


def per_rank_batch(scale: Scale, world_size: int, accum_freq: int = 1) -> int:
    """``--batch-size``: the global batch split over processes and accumulation steps, exactly."""
    if world_size < 1 or accum_freq < 1:
        raise TrainError(f"invalid world size {world_size} / accum_freq {accum_freq}")
    if scale.batch_size % (world_size * accum_freq):
        raise TrainError(f"global batch {scale.batch_size} of scale {scale.name!r} is not divisible by "
                         f"{world_size} processes x accum_freq {accum_freq}; the batch size is a fixed knob")
    return scale.batch_size // (world_size * accum_freq)


def build_argv(scale: Scale, *, train_data: str, samples_per_segment: int, logs: str, name: str, seed: int,
               world_size: int = 1, accum_freq: int = 1, resampled: bool = True, device: str | None = None,
               log_every: int | None = None) -> list[str]:
    """The argv list for ``open_clip_train.main.main`` (see the module docstring for the choices)."""
    argv = ["--save-frequency", "0", "--ddp-static-graph", "--local-loss", "--gather-with-grad"]
    if not scale.cpu:
        argv.append("--grad-checkpointing")
    argv += ["--train-data", train_data, "--train-num-samples", str(samples_per_segment),
             "--warmup", str(scale.warmup), "--dataset-type", "webdataset", "--precision", scale.precision,
             "--workers", str(scale.workers), "--model", scale.model,
             "--batch-size", str(per_rank_batch(scale, world_size, accum_freq)), "--epochs", str(scale.segments),
             "--lr", str(scale.lr), "--logs", logs, "--name", name, "--seed", str(seed),
             "--accum-freq", str(accum_freq),
             "--log-every-n-steps", str(log_every or (10 if scale.cpu else 100)),
             "--save-most-recent", "--resume", "latest"]
    if resampled:
        argv.append("--dataset-resampled")
    if scale.beta2 is not None:
        argv += ["--beta2", str(scale.beta2)]
    if scale.wd != OPEN_CLIP_DEFAULT_WD:
        argv += ["--wd", str(scale.wd)]
    if device is not None:
        argv += ["--device", device]
    if device == "cpu":
        argv += ["--report-to", ""]
    return argv
