"""A training watched from the console: each of open_clip's log lines once, open_clip's expected "initialized
randomly" warning silenced for the call that creates the student (and only for it)."""

import logging
import re
import sys

from filterbench.harness.scales import resolve_scale
from filterbench.harness.stages.train import run_train


def test_each_training_line_once_and_no_random_init_warning(train_store, selections, tiny, capfd):
    root = logging.getLogger()
    # what `logging.warning` installs the first time any library calls it (open_clip does, building a world)
    earlier = logging.StreamHandler(sys.stderr)
    root.addHandler(earlier)
    try:
        run_train(train_store, selections["subset"], resolve_scale("nano-xs", tiny), seed=11)
        err = capfd.readouterr().err
        assert err.count("Start epoch 0") == 1, err
        assert err.count("Start epoch 4") == 1
        assert "No pretrained weights loaded" not in err
        assert earlier in root.handlers  # given back once the training is over
        root.warning("No pretrained weights loaded: outside any training")  # the filter was scoped to the call
        assert "outside any training" in capfd.readouterr().err
    finally:
        root.removeHandler(earlier)


def test_a_progress_bar_over_the_training_batches(train_store, selections, tiny, capfd):
    run_train(train_store, selections["subset"], resolve_scale("nano-xs", tiny), seed=12, progress=True)
    err = capfd.readouterr().err
    # 5 segments x 4 batches of 32; a bar that has advanced shows the elapsed time and the ETA ([00:03<00:07, ...])
    advanced = re.findall(r"train:\s+\d+%\|[^|\r\n]*\|\s*([1-9]\d*)/20 \[\d\d:\d\d<\d\d:\d\d", err)
    assert advanced, err[-2000:]
