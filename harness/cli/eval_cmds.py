"""CLI commands for eval sets and result summaries (plain click objects; the root group attaches them).

- ``evalsets`` group: ``download``, ``add-letitwag``, ``ls``.
- ``eval_summarize``: ``filterbench eval summarize RESULTS.jsonl [--tasklist datacomp_v1]``.

Errors are :class:`~filterbench.harness.errors.FilterbenchError` subclasses, printed as ``error: <one line>``
with exit status 2 (``one_line_errors``).  Heavy imports (torch, open_clip) happen inside the commands so
``--help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from filterbench.harness.cli.common import COUNT, one_line_errors
from filterbench.harness.errors import FilterbenchError

TASKLIST_OPTION = click.option(
    "--tasklist",
    default="datacomp_v1",
    show_default=True,
    help="Task list name (built in) or path to a task list YAML file.",
)


class EvalsetsCommandError(FilterbenchError):
    """A command finished with failed tasks."""


def _echo_json(value) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))


@click.group("evalsets")
def evalsets() -> None:
    """Manage local evaluation sets (DataComp's wds_<task>_test layout).

    \b
    Examples:
      filterbench evalsets ls ./evalsets
      filterbench evalsets add-letitwag --parquet data/train-00000.parquet --to ./evalsets
    """


@evalsets.command("ls")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@TASKLIST_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@one_line_errors
def evalsets_ls(folder: Path, tasklist: str, as_json: bool) -> None:
    """List which tasks of a task list have a usable eval set under FOLDER.

    \b
    Examples:
      filterbench evalsets ls ./evalsets
      filterbench evalsets ls ./evalsets --tasklist path/to/nano_v1.yaml --json
    """
    from filterbench.harness.evaluation.evalsets import evalset_problem
    from filterbench.harness.evaluation.tasklist import load_tasklist

    tl = load_tasklist(tasklist)
    rows = []
    for task in tl.tasks + tl.extras:
        problem = evalset_problem(folder / task.folder, task.evaluator)
        kind = "extra" if task in tl.extras else ("scored" if task.scored else "unscored")
        rows.append({"key": task.key, "folder": task.folder, "kind": kind, "status": problem or "present"})
    if as_json:
        _echo_json({"tasklist": tl.name, "sha256": tl.sha256, "tasks": rows})
        return
    present = sum(r["status"] == "present" for r in rows)
    for row in rows:
        mark = "ok" if row["status"] == "present" else "--"
        click.echo(f"{mark} {row['key']:<55} {row['kind']:<8} {row['status']}")
    click.echo(f"{present}/{len(rows)} present ({tl.name})")


@evalsets.command("add-letitwag")
@click.option(
    "--parquet",
    "parquet_files",
    multiple=True,
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A Let It Wag! parquet file (repeat for several).",
)
@click.option(
    "--to",
    "to_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Eval-set root; writes <to>/wds_letitwag_test.",
)
@click.option("--image-column", default="image", show_default=True, help="Column with image bytes.")
@click.option("--label-column", default="label", show_default=True, help="Column with class index or name.")
@click.option(
    "--classnames",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Class names, one per line (default: ClassLabel names in the parquet metadata).",
)
@click.option(
    "--templates",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Templates with {c}, one per line (default: the 80 OpenAI ImageNet prompts).",
)
@click.option("--shard-size", type=COUNT, default=10_000, show_default=True, help="Samples per tar.")
@click.option("--overwrite", is_flag=True, help="Replace an existing wds_letitwag_test folder.")
@TASKLIST_OPTION
@one_line_errors
def evalsets_add_letitwag(
    parquet_files, to_dir, image_column, label_column, classnames, templates, shard_size, overwrite, tasklist
) -> None:
    """Convert the Let It Wag! parquet release into an extra eval set (reported beside the average).

    \b
    Examples:
      filterbench evalsets add-letitwag --parquet lw-0.parquet --parquet lw-1.parquet --to ./evalsets
      filterbench evalsets add-letitwag --parquet lw.parquet --to ./evalsets --label-column concept
    """
    from filterbench.harness.evaluation.letitwag import convert_letitwag

    folder = convert_letitwag(
        list(parquet_files),
        to_dir,
        image_column=image_column,
        label_column=label_column,
        classnames=classnames,
        templates=templates,
        shard_size=shard_size,
        overwrite=overwrite,
        tasklist=tasklist,
    )
    click.echo(str(folder))


@evalsets.command("download")
@click.option(
    "--to",
    "to_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Eval-set root to fill.",
)
@TASKLIST_OPTION
@click.option("--task", "tasks", multiple=True, help="Only this task key (repeatable).")
@click.option("--org", default="djghosh", show_default=True, help="HF org holding the wds_<task>_test repos.")
@click.option("--with-letitwag", is_flag=True, help="Also fetch and convert bethgelab/Let-It-Wag.")
@one_line_errors
def evalsets_download(to_dir, tasklist, tasks, org, with_letitwag) -> None:
    """Download the task list's eval sets from the Hugging Face hub (needs network).

    \b
    Examples:
      filterbench evalsets download --to ./evalsets
      filterbench evalsets download --to ./evalsets --task imagenet1k --task vtab/cifar100
    """
    from filterbench.harness.evaluation.download import download_evalsets, download_letitwag

    status = download_evalsets(to_dir, tasklist, tasks=tasks or None, org=org)
    if with_letitwag:
        status["letitwag"] = str(download_letitwag(to_dir, tasklist))
    _echo_json(status)
    failed = [key for key, value in status.items() if value.startswith("error")]
    if failed:
        raise EvalsetsCommandError(f"{len(failed)} eval set(s) failed to download: {', '.join(failed)}")


@click.command("summarize")
@click.argument("results", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@TASKLIST_OPTION
@one_line_errors
def eval_summarize(results: Path, tasklist: str) -> None:
    """Print the headline scores of an eval_results.jsonl as JSON (missing tasks are listed, never averaged).

    \b
    Examples:
      filterbench eval summarize evals/abc123/eval_results.jsonl
      filterbench eval summarize results.jsonl --tasklist path/to/nano_v1.yaml
    """
    from filterbench.harness.evaluation.aggregate import summarize

    _echo_json(summarize(results, tasklist))
