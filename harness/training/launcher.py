"""The launcher: the one place that calls ``open_clip_train.main.main(argv)``, in-process or in each rank.

``python -m filterbench.harness.training.launcher LAUNCH.json`` (what torchrun and srun start) and
:func:`launch_inprocess` do the same, in this order:

1. register our model configs with open_clip (the registry is per process);
2. patch ecosystem trap 2: webdataset >= 0.2.96 ends each shard with an empty dict that open_clip_train's
   ``group_by_keys_nothrow`` does not skip -> ``open_clip_train.data.tar_file_expander`` with ``eof_value=None``;
3. patch trap 6: open_clip_train wraps DDP with ``device_ids=[device]`` even on CPU -> a DDP subclass that
   drops CPU device ids;
4. seed the sample shuffle of open_clip_train's webdataset loader (our trap: ``wds.shuffle`` is called without
   a seed, and webdataset then seeds it from the process id and the clock, so the same subset-mode training
   gave other weights each run) -> :class:`~.shuffle.EpochSeededShuffle`, seeded from the dataloader worker's seed
   (itself derived from ``--seed`` and the rank) and the epoch;
5. replace ``open_clip_train.main.get_data`` by a wrapper: the planned modes get the planned loader
   (:mod:`.stream`), the subset mode open_clip's own loader; either way the train dataloader is wrapped in a
   :class:`~.feed.FeedMeter` (epoch timing, optional fed-uid records);
6. call ``main(argv)`` with open_clip's expected "initialized randomly" warning silenced
   (:func:`~filterbench.harness.librarylogs.expected_random_init`); a ``-1`` return (trap 8: it returns -1 but
   would exit 0) or a missing final checkpoint is a failure (exit status 1); on success rank 0 writes
   ``train_done.json``.

Every attempt appends one line to ``attempts.jsonl`` (rank 0): epochs run with their samples and wall time.
In-process runs restore what open_clip changes globally (root log handlers, RNG states, thread count) afterwards,
print each of open_clip's log lines once (its own console handler only), and can show a progress bar over the
whole training's batches, with an ETA.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

DONE_MARKER = "train_done.json"
ATTEMPTS = "attempts.jsonl"


@dataclass
class LaunchSpec:
    """Everything one training launch needs; saved as ``launch.json`` in the train artifact.

    Attributes:
        argv: the exact arguments of ``open_clip_train.main.main``.
        run_dir: open_clip's ``--logs/--name`` folder (checkpoints, out.log); markers are written here.
        epochs: segments to train (the final checkpoint is ``checkpoints/epoch_<epochs>.pt``).
        data_dir, batches: the planned loader's data folder and global batches per segment (planned modes).
        fed_dir: where to record fed uids, or None.
        threads: torch intra-op threads (trap 5), None to leave torch's default.
        model_config_dirs: extra open_clip config folders to register.
        stop_at_epoch: tests only: fail when this epoch would start.
        world_size, launcher: how it is launched (recorded only; open_clip reads the rank from the environment).
    """

    argv: list[str]
    run_dir: str
    epochs: int
    data_dir: str | None = None
    batches: int | None = None
    fed_dir: str | None = None
    threads: int | None = 1
    model_config_dirs: list[str] = field(default_factory=list)
    stop_at_epoch: int | None = None
    world_size: int = 1
    launcher: str = "inprocess"

    def save(self, path: Path) -> None:
        from filterbench.harness.store import write_json_atomic

        write_json_atomic(Path(path), asdict(self))

    @classmethod
    def load(cls, path: Path) -> LaunchSpec:
        return cls(**json.loads(Path(path).read_text()))


def apply_patches(extra_config_dirs: tuple[str, ...] = ()) -> None:
    """Model registration, the trap 2 and trap 6 patches and the seeded sample shuffle; idempotent."""
    import open_clip_train.data
    import torch
    import webdataset
    from filterbench.harness.training.models import register_model_configs
    from filterbench.harness.training.shuffle import seed_sample_shuffle

    register_model_configs(*extra_config_dirs)
    seed_sample_shuffle(open_clip_train.data)
    open_clip_train.data.tar_file_expander = functools.partial(webdataset.tariterators.tar_file_expander,
                                                               eof_value=None)
    if not getattr(torch.nn.parallel.DistributedDataParallel, "_filterbench_cpu_ok", False):
        torch.nn.parallel.DistributedDataParallel = _cpu_tolerant_ddp(torch.nn.parallel.DistributedDataParallel)


def _cpu_tolerant_ddp(base: type) -> type:
    class CpuTolerantDDP(base):
        """DDP that ignores ``device_ids`` naming CPU devices (only GPU modules accept them)."""

        _filterbench_cpu_ok = True

        def __init__(self, module: Any, device_ids: Any = None, *args: Any, **kwargs: Any):
            import torch

            if device_ids and all(torch.device(d).type == "cpu" for d in device_ids):
                device_ids = None
            super().__init__(module, device_ids, *args, **kwargs)

    return CpuTolerantDDP


def _get_data(args: Any, preprocess_fns: Any, epoch: int = 0, tokenizer: Any = None, *, spec: LaunchSpec,
              original: Any, meters: list, progress: Any = None) -> dict:
    """open_clip_train's ``get_data`` with our train loader (planned modes) and a FeedMeter around it."""
    from filterbench.harness.training.feed import FeedMeter, uids_in_wds_batches
    from filterbench.harness.training.stream import planned_data_info

    if spec.data_dir is not None:
        others = original(_without_train(args), preprocess_fns, epoch=epoch, tokenizer=tokenizer) \
            if (args.val_data or args.imagenet_val or args.imagenet_v2) else {}
        layout = json.loads((Path(spec.data_dir) / "layout.json").read_text())
        data = {"train": planned_data_info(args, preprocess_fns[0], tokenizer, Path(spec.data_dir), layout,
                                           spec.batches, epoch), **others}
    elif spec.fed_dir is not None:
        with uids_in_wds_batches():
            data = original(args, preprocess_fns, epoch=epoch, tokenizer=tokenizer)
    else:
        data = original(args, preprocess_fns, epoch=epoch, tokenizer=tokenizer)
    train = data["train"]
    meter = FeedMeter(train.dataloader, train.shared_epoch, args.rank, spec.fed_dir, spec.stop_at_epoch, progress)
    train.dataloader = meter
    meters.append(meter)
    return data


def _without_train(args: Any) -> Any:
    import copy

    stripped = copy.copy(args)
    stripped.train_data = None
    return stripped


def run(spec: LaunchSpec, progress: bool = False) -> int:
    """Train as ``spec`` says; returns 0 on success, 1 on failure (never the -1 open_clip returns).

    Args:
        progress: show a progress bar over the training's batches on stderr (rank 0).
    """
    import open_clip_train.main as oc_main
    import torch

    from filterbench.harness.librarylogs import expected_random_init

    apply_patches(tuple(spec.model_config_dirs))
    if spec.threads:
        torch.set_num_threads(spec.threads)
    if spec.fed_dir:
        Path(spec.fed_dir).mkdir(parents=True, exist_ok=True)
    meters: list = []
    original = oc_main.get_data
    rank = int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")))
    bar = _BatchBar(spec.epochs) if progress and rank == 0 else None
    oc_main.get_data = functools.partial(_get_data, spec=spec, original=original, meters=meters, progress=bar)
    started, status = time.time(), "failed"
    try:
        with expected_random_init():  # the student starts from random weights on purpose
            result = oc_main.main(list(spec.argv))
        # only rank 0 saves checkpoints (other nodes may not even see its disk)
        status = "ok" if result != -1 and (rank != 0 or _final_checkpoint(spec).is_file()) else "failed"
        if result == -1:
            logging.getLogger("filterbench.train").error("open_clip_train.main returned -1 (see out.log)")
    except BaseException as exc:
        status = "interrupted" if type(exc).__name__ == "TrainingInterrupted" else "failed"
        raise
    finally:
        oc_main.get_data = original
        if bar is not None:
            bar.close()
        if rank == 0:
            _record_attempt(spec, status, started, meters)
    return 0 if status == "ok" else 1


class _BatchBar:
    """A tqdm bar over every batch of the training (all segments), sized when the first epoch starts."""

    def __init__(self, epochs: int):
        self.epochs, self.bar = epochs, None

    def __call__(self, epoch: int, batches_per_epoch: int) -> None:
        """One batch of ``epoch`` was fed."""
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=self.epochs * batches_per_epoch, initial=epoch * batches_per_epoch,
                            desc="train", unit="batch", dynamic_ncols=True, leave=False)
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _final_checkpoint(spec: LaunchSpec) -> Path:
    return Path(spec.run_dir) / "checkpoints" / f"epoch_{spec.epochs}.pt"


def _record_attempt(spec: LaunchSpec, status: str, started: float, meters: list) -> None:
    epochs = [e for m in meters for e in m.epochs]
    line = {"status": status, "started": round(started, 3), "wall_s": round(time.time() - started, 3),
            "epochs": epochs}
    run_dir = Path(spec.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / ATTEMPTS, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(line) + "\n")
    if status == "ok":
        (run_dir / DONE_MARKER).write_text(json.dumps({"epochs": spec.epochs, "final": _final_checkpoint(spec).name}))


def launch_inprocess(spec: LaunchSpec, progress: bool = False) -> int:
    """Run in this process, then undo open_clip's global side effects (log handlers, seeds, threads)."""
    import numpy as np
    import torch

    from filterbench.harness.librarylogs import one_console_handler

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    # open_clip's setup_logging sets every existing logger to INFO (torch's included): put them back
    levels = {name: lg.level for name, lg in logging.root.manager.loggerDict.items() if isinstance(lg, logging.Logger)}
    states = (torch.get_rng_state(), np.random.get_state(), random.getstate(), torch.get_num_threads())
    try:
        with one_console_handler():  # open_clip adds its own; an existing one would print every line twice
            return run(spec, progress)
    finally:
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(level)
        for name, lg in list(logging.root.manager.loggerDict.items()):
            if isinstance(lg, logging.Logger):
                lg.setLevel(levels.get(name, logging.NOTSET))
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])
        torch.set_num_threads(states[3])


def main(argv: list[str] | None = None) -> None:
    """Entry point of each process under torchrun/srun: ``launcher LAUNCH.json``."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.exit("usage: python -m filterbench.harness.training.launcher LAUNCH.json")
    code = run(LaunchSpec.load(Path(argv[0])))
    logging.getLogger("torch").setLevel(logging.WARNING)  # open_clip set it to INFO: no dynamo stats at exit
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    finally:
        sys.exit(code)


if __name__ == "__main__":
    main()
