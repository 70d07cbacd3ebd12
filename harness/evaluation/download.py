"""Fetch DataComp's eval sets from the Hugging Face hub into the local layout (needs network).

- Webdataset tasks: the dataset repo ``djghosh/wds_<task>_test`` is mirrored as is into
  ``<to_dir>/wds_<task>_test`` with ``huggingface_hub.snapshot_download`` (it verifies LFS checksums and
  resumes partial downloads).  Some repos also appear under the ``clip-benchmark`` org: pass ``org``.
- ``retrieval/*`` and ``misc/winogavil``: DataComp loads ``nlphuji/<name>`` with ``datasets.load_dataset``.
  Those repos are script-based, which ``datasets >= 4`` no longer runs, so this needs ``datasets<3``
  installed; the loaded split is then rewritten into our local retrieval / WinoGAViL webdataset layout.
- Let It Wag! (optional): the parquet files of ``bethgelab/Let-It-Wag`` are fetched and converted.

Nothing here is exercised by the offline test suite except the offline error path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

from filterbench.harness.errors import FilterbenchError
from filterbench.harness.evaluation import evalsets
from filterbench.harness.evaluation.tasklist import Task, TaskList, load_tasklist

DEFAULT_ORG = "djghosh"
HF_RETRIEVAL_ORG = "nlphuji"
LETITWAG_REPO = "bethgelab/Let-It-Wag"


class DownloadError(FilterbenchError):
    """An eval set could not be fetched (offline, unknown repo, missing optional package)."""


def _check_online() -> None:
    # huggingface_hub reads HF_HUB_OFFLINE once at import; re-read it so tests and users can set it late
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise DownloadError("offline: HF_HUB_OFFLINE is set, the Hugging Face hub cannot be reached")


def _snapshot(repo_id: str, local_dir: Path, allow_patterns: list[str] | None = None) -> Path:
    from huggingface_hub import snapshot_download

    _check_online()
    try:
        snapshot_download(
            repo_id=repo_id, repo_type="dataset", local_dir=local_dir, allow_patterns=allow_patterns
        )
    except Exception as exc:  # network errors come in many types (requests/httpx/hub); report one line
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DownloadError(
            f"cannot download dataset {repo_id} (offline or hub unreachable?): {reason}"
        ) from exc
    return local_dir


def download_wds_task(task: Task, to_dir: str | Path, org: str = DEFAULT_ORG) -> Path:
    """Mirror ``<org>/<task.folder>`` into ``<to_dir>/<task.folder>`` and check the layout."""
    folder = _snapshot(f"{org}/{task.folder}", Path(to_dir) / task.folder)
    problem = evalsets.evalset_problem(folder, task.evaluator)
    if problem:
        raise DownloadError(
            f"{task.key}: downloaded {org}/{task.folder} but the layout is incomplete ({problem})"
        )
    return folder


def _load_hf_split(name: str, cache_dir: Path) -> Any:
    _check_online()
    try:
        import datasets
    except ImportError:
        raise DownloadError(
            f"nlphuji/{name} is a script-based HF dataset: install `datasets<3` to fetch it"
        ) from None
    try:
        return datasets.load_dataset(
            f"{HF_RETRIEVAL_ORG}/{name}", split="test", cache_dir=str(cache_dir), trust_remote_code=True
        )
    except Exception as exc:
        raise DownloadError(
            f"cannot load {HF_RETRIEVAL_ORG}/{name}: {str(exc).strip().splitlines()[0]}"
        ) from exc


def download_hf_task(task: Task, to_dir: str | Path, overwrite: bool = False) -> Path:
    """Load ``nlphuji/<name>`` (DataComp's source for retrieval and WinoGAViL) and write our local layout."""
    to_dir = Path(to_dir)
    split = _load_hf_split(task.key.split("/", 1)[1], to_dir / "hf_cache")
    folder = to_dir / task.folder
    if task.evaluator == "winogavil":
        # columns as DataComp's wino_eval.py reads them
        examples = (
            {
                "cue": ex["cue"],
                "images": list(ex["candidate_images"]),
                "associations": [ex["candidates"].index(a) for a in ex["associations"]],
            }
            for ex in split
        )
        return evalsets.write_winogavil_evalset(folder, examples, overwrite=overwrite)
    # columns as DataComp's retr_eval.py reads them: `image` and `caption` (a list of strings)
    return evalsets.write_retrieval_evalset(
        folder, (ex["image"] for ex in split), (ex["caption"] for ex in split), overwrite=overwrite
    )


def download_letitwag(
    to_dir: str | Path, tasklist: TaskList | str = "datacomp_v1", **convert_options
) -> Path:
    """Fetch the Let It Wag! parquet files into ``<to_dir>/raw/Let-It-Wag`` and convert them."""
    from filterbench.harness.evaluation.letitwag import convert_letitwag

    raw = _snapshot(LETITWAG_REPO, Path(to_dir) / "raw" / "Let-It-Wag", allow_patterns=["data/*.parquet"])
    files = sorted((raw / "data").glob("*.parquet"))
    return convert_letitwag(files, to_dir, tasklist=tasklist, **convert_options)


def download_evalsets(
    to_dir: str | Path,
    tasklist: TaskList | str = "datacomp_v1",
    tasks: Iterable[str] | None = None,
    org: str = DEFAULT_ORG,
    skip_present: bool = True,
) -> dict[str, str]:
    """Download the task list's eval sets; returns task key -> ``downloaded`` / ``present`` / error line.

    Unlike DataComp's script, a failure is not swallowed: the returned dict names it, and the caller (CLI)
    exits non-zero when any task failed.  Offline, the first task raises :class:`DownloadError` at once.
    """
    tasklist = load_tasklist(tasklist)
    wanted = set(tasks) if tasks is not None else None
    status: dict[str, str] = {}
    _check_online()
    for task in tasklist.tasks:
        if wanted is not None and task.key not in wanted:
            continue
        if skip_present and evalsets.evalset_problem(Path(to_dir) / task.folder, task.evaluator) is None:
            status[task.key] = "present"
            continue
        try:
            if task.key.startswith(("retrieval/", "misc/")):
                download_hf_task(task, to_dir, overwrite=True)
            else:
                download_wds_task(task, to_dir, org)
            status[task.key] = "downloaded"
        except DownloadError as exc:
            status[task.key] = f"error: {exc}"
    return status
