"""``filterbench train``: train the fixed recipe of a scale on a selection."""

from __future__ import annotations

from pathlib import Path

import click
from filterbench.harness.cli.common import COUNT, SEED, get_store, one_line_errors, workdir_option
from filterbench.harness.cli.options import deprecated_option, override_option, overrides_from


@click.command("train")
@click.argument("selection")
@click.option("--scale", required=True, help="Scale whose fixed recipe to train (see `filterbench ls scales`).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Training seed (open_clip --seed, data plan).")
@workdir_option
@click.option("--nproc", type=COUNT, default=1, show_default=True,
              help="Processes: torchrun ranks, or SLURM tasks per node.")
@click.option("--launcher", type=click.Choice(["inprocess", "torchrun", "slurm"]), default=None,
              help="inprocess (default for --nproc 1), torchrun (default otherwise), or slurm: write an sbatch "
                   "script and print its path.")
@override_option
@deprecated_option("--set", "set_overrides", "-o KNOB=VALUE", multiple=True)
@click.option("--workers", type=COUNT, default=None, help="Resharder processes (default: up to 4).")
@click.option("--keep-data", is_flag=True, help="Keep the resharded webdataset shards in the artifact.")
@click.option("--count-fed", is_flag=True, help="Record every uid fed to the model under fed/ (slower I/O).")
@click.option("--nodes", type=COUNT, default=1, show_default=True, help="SLURM nodes.")
@click.option("--gpus-per-task", type=click.IntRange(min=0), default=1, show_default=True,
              help="SLURM GPUs per task (0: CPU).")
@click.option("--slurm-time", default="24:00:00", show_default=True, help="SLURM time limit.")
@click.option("--partition", default=None, help="SLURM partition.")
@one_line_errors
def train(selection: str, scale: str, seed: int, workdir: Path | None, nproc: int, launcher: str | None,
          overrides: tuple[str, ...], set_overrides: tuple[str, ...], workers: int | None, keep_data: bool, count_fed: bool, nodes: int,
          gpus_per_task: int, slurm_time: str, partition: str | None) -> None:
    """Train SELECTION (a selection key, key prefix or folder) with the scale's fixed open_clip recipe.

    Reshards the selection from the pool's tar shards, trains with open_clip_train and writes a train artifact
    (checkpoints, argv, open_clip's logs, throughput); prints the artifact folder last (with --launcher slurm,
    the script to submit).  A finished training is reused; an interrupted one resumes from its last checkpoint.

    \b
    Examples:
      filterbench train 3fa2c1 --scale nano-xs
      filterbench train 3fa2c1 --scale nano --nproc 2 -o samples_seen=48000
      filterbench train 3fa2c1 --scale medium --launcher slurm --nproc 8 --nodes 2
    """
    from filterbench.harness.config import resolve_run_config
    from filterbench.harness.stages.train import run_train
    from filterbench.harness.training.distributed import SlurmOptions

    launcher = launcher or ("inprocess" if nproc == 1 else "torchrun")
    slurm = SlurmOptions(nodes=nodes, tasks_per_node=nproc, gpus_per_task=gpus_per_task, time=slurm_time,
                         partition=partition) if launcher == "slurm" else None
    config = resolve_run_config(workdir=workdir, scale=scale, overrides=overrides_from(overrides, set_overrides),
                                stages=("train",))
    result = run_train(get_store(config.workdir), selection, config.scale, seed=seed, nproc=nproc,
                       launcher=launcher, workers=workers, count_fed=count_fed, keep_data=keep_data, slurm=slurm,
                       progress=True)
    if isinstance(result, Path):
        click.echo(f"wrote a SLURM script; submit it with: sbatch {result}")
        click.echo(str(result))
        return
    manifest = result.manifest
    speed = manifest["throughput"]
    data = manifest["data"]
    click.echo(f"{manifest['mode']} selection, scale {manifest['scale_name']}"
               f"{'' if manifest['official'] else ' (unofficial: fixed knobs overridden)'}: "
               f"{manifest['budget']['steps']} steps, {speed['samples_fed']:,} samples fed, "
               f"{speed['samples_per_s'] or 0:,.0f} samples/s")
    if data.get("missing_uids"):
        click.echo(f"{data['missing_uids']:,} selected uids had no image in the pool's tars (failed downloads)")
    click.echo(str(result.path))


if __name__ == "__main__":  # the SLURM script's finalize step runs this module
    train()
