"""What libraries log during a run: expected warnings silenced where they arise, each line printed once.

* open_clip warns "No pretrained weights loaded for model ... Model initialized randomly" for every model it
  creates without a pretrained tag.  The harness creates such models on purpose (a student trained from
  scratch, a model a checkpoint is loaded into next), so :func:`expected_random_init` drops that one message,
  only while the call that creates the model runs.
* open_clip_train adds its own console handler to the root logger.  When the root logger already has one
  (``logging.warning`` installs a default handler the first time it is called, e.g. by open_clip when a world
  build or a learned scorer created a model earlier in the process), every training line would print twice;
  :func:`one_console_handler` detaches the existing console handlers while the training runs.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

RANDOM_INIT = "No pretrained weights loaded"


class _DropRandomInit(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return RANDOM_INIT not in record.getMessage()


@contextlib.contextmanager
def expected_random_init() -> Iterator[None]:
    """Silence open_clip's random-initialisation warning (it logs through the root logger) inside the block."""
    root, quiet = logging.getLogger(), _DropRandomInit()
    root.addFilter(quiet)
    try:
        yield
    finally:
        root.removeFilter(quiet)


def _is_console(handler: logging.Handler) -> bool:
    return type(handler) is logging.StreamHandler and getattr(handler, "stream", None) in (
        sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__)


@contextlib.contextmanager
def one_console_handler() -> Iterator[None]:
    """Detach the root logger's console handlers inside the block (a library adds its own there)."""
    root = logging.getLogger()
    detached = [h for h in root.handlers if _is_console(h)]
    for handler in detached:
        root.removeHandler(handler)
    try:
        yield
    finally:
        for handler in detached:
            root.addHandler(handler)
