"""``filterbench eval TRAIN`` (the eval stage) and ``filterbench eval summarize RESULTS``."""

from __future__ import annotations

from pathlib import Path

import click

from filterbench.harness.cli.common import get_store, one_line_errors, print_json, workdir_option
from filterbench.harness.cli.options import echo_log, executor_options, executor_spec, world_options


class _DefaultToStage(click.Group):
    """``eval summarize ...`` is a sub-command; ``eval <train key>`` runs the stage."""

    def resolve_command(self, ctx: click.Context, args: list[str]):
        if args and args[0] not in self.commands:
            return "stage", self.commands["stage"], args
        return super().resolve_command(ctx, args)


@click.group(cls=_DefaultToStage)
def eval() -> None:  # noqa: A001 - the verb users type
    """Evaluate a trained model on the fixed task list, or summarize results.

    \b
    Examples:
      filterbench eval 7d1e0c --evalsets ~/datacomp_evalsets
      filterbench eval summarize eval_results.jsonl --tasklist datacomp_v1
    """


@eval.command("stage", hidden=True)
@click.argument("train_ref", metavar="TRAIN")
@world_options("evalsets", "tasklist")
@click.option("--device", default="cpu", show_default=True)
@executor_options
@workdir_option
@one_line_errors
def eval_stage(train_ref: str, world: str | None, evalsets: Path | None, tasklist: str | None, device: str,
               executor_name: str, workers: int | None, ray_address: str | None, submit: bool,
               slurm_options: tuple[str, ...], workdir: Path | None) -> None:
    """Evaluate the checkpoint of a train artifact; prints the summary, then the eval folder.

    The eval sets and task list are --world's, else those of the default world of the scale the model was
    trained at (nano-xs and nano: the nano suite); --evalsets and --tasklist replace them.
    """
    from filterbench.harness.config import resolve_run_config
    from filterbench.harness.stages.evaluate import run_eval

    store = get_store(workdir)
    train = store.find(train_ref, kind="train")
    config = resolve_run_config(workdir=workdir, scale=_trained_scale(train), world=world, evalsets=evalsets,
                                tasklist=tasklist, stages=("eval",), log=echo_log,
                                executor=executor_spec(executor_name, workers, ray_address, submit, slurm_options))
    artifact = run_eval(store, train, config.evalsets, config.tasklist, device=device, progress=True,
                        executor=config.executor)
    print_json(artifact.manifest["summary"])
    click.echo(str(artifact.path))


def _trained_scale(train) -> str | None:
    """The scale a train artifact was trained at, when it is a row of the scale table (its default world is
    the default world of the evaluation)."""
    from filterbench.harness.scales import SCALES

    name = train.manifest.get("scale_name")
    return name if name in SCALES else None


try:  # the summarize command lives with the evaluation package
    from filterbench.harness.cli.eval_cmds import eval_summarize

    eval.add_command(eval_summarize, "summarize")
except ImportError:  # pragma: no cover - evaluation package missing from this build
    pass
