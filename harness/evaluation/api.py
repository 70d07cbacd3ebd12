"""The evaluation package's public surface, importable from one place.

The content-addressed ``eval`` stage keys on ``TaskList.sha256`` and :data:`AGGREGATION_VERSION`, and calls
:func:`evaluate_checkpoint`.  The nano world writes its eval suite with the ``write_*_evalset`` helpers and
its own task list file.
"""

from filterbench.harness.evaluation.aggregate import AGGREGATION_VERSION, aggregate_rows, summarize
from filterbench.harness.evaluation.download import download_evalsets
from filterbench.harness.evaluation.evalsets import (
    write_classification_evalset,
    write_retrieval_evalset,
    write_winogavil_evalset,
)
from filterbench.harness.evaluation.evaluator import EvalRun, evaluate_checkpoint, load_model
from filterbench.harness.evaluation.letitwag import convert_letitwag
from filterbench.harness.evaluation.results import RESULTS_FILENAME, read_results
from filterbench.harness.evaluation.tasklist import (
    Task,
    TaskList,
    folder_name,
    load_tasklist,
    register_tasklist_dir,
)

__all__ = [
    "AGGREGATION_VERSION",
    "EvalRun",
    "RESULTS_FILENAME",
    "Task",
    "TaskList",
    "aggregate_rows",
    "convert_letitwag",
    "download_evalsets",
    "evaluate_checkpoint",
    "folder_name",
    "load_model",
    "load_tasklist",
    "read_results",
    "register_tasklist_dir",
    "summarize",
    "write_classification_evalset",
    "write_retrieval_evalset",
    "write_winogavil_evalset",
]
