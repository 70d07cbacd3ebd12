"""``filterbench eval TRAIN`` (the eval stage) and ``filterbench eval summarize RESULTS``."""

from __future__ import annotations

from pathlib import Path

import click

from filterbench.harness.cli.common import get_store, one_line_errors, print_json, workdir_option


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
@click.option("--evalsets", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Eval sets in DataComp's layout (default for nano runs: the nano suite).")
@click.option("--tasklist", default=None, help="Task list name or file (default: datacomp_v1, or the nano list).")
@click.option("--device", default="cpu", show_default=True)
@workdir_option
@one_line_errors
def eval_stage(train_ref: str, evalsets: Path | None, tasklist: str | None, device: str,
               workdir: Path | None) -> None:
    """Evaluate the checkpoint of a train artifact; prints the summary, then the eval folder."""
    from filterbench.harness.stages.evaluate import run_eval

    store = get_store(workdir)
    train = store.find(train_ref, kind="train")
    nano = _nano_world_for(train) if evalsets is None or tasklist is None else None
    artifact = run_eval(store, train, evalsets or (nano.evalsets_dir if nano else None),
                        tasklist or (nano.tasklist if nano else None), device=device)
    print_json(artifact.manifest["summary"])
    click.echo(str(artifact.path))


def _nano_world_for(train):
    """The nano world a train artifact's pool came from, if any (its eval suite is the default)."""
    scale = train.manifest.get("scale", {})
    name = scale.get("name") if isinstance(scale, dict) else scale
    sizes = {"nano-xs": "xs", "nano": "default"}
    if name not in sizes:
        return None
    from filterbench.harness.nano import get_world

    return get_world(sizes[name])


try:  # the summarize command lives with the evaluation package
    from filterbench.harness.cli.eval_cmds import eval_summarize

    eval.add_command(eval_summarize, "summarize")
except ImportError:  # pragma: no cover - evaluation package missing from this build
    pass
