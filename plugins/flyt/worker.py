"""One torchrun rank of a FLYT fit: ``python -m torch.distributed.run ... -m -- filterbench.plugins.flyt.worker
SPEC.json``.  Backend gloo on CPU, nccl on CUDA (one GPU per local rank)."""

from __future__ import annotations

import dataclasses
import os
import sys


def main(argv: list[str] | None = None) -> None:
    import torch
    import torch.distributed as dist

    from filterbench.plugins.flyt.dist import Group
    from filterbench.plugins.flyt.trainer import FitSpec, train

    spec = FitSpec.load((argv or sys.argv[1:])[0])
    cuda = spec.device.startswith("cuda")
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        spec = dataclasses.replace(spec, device=f"cuda:{local}")
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    try:
        train(spec, Group.from_env())
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
