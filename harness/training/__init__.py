"""Training: a selection -> webdataset shards -> open_clip_train with the scale's fixed recipe.

Modules: :mod:`.plan` (what is fed, per segment), :mod:`.tarindex` and :mod:`.resharder` (the data side),
:mod:`.stream` (the planned loader of the multiset/schedule modes), :mod:`.feed` (fed-uid counting, epoch timing),
:mod:`.launcher` (the patches and the call of ``open_clip_train.main.main``), :mod:`.argv` (DataComp's argv),
:mod:`.distributed` (torchrun, SLURM), :mod:`.models` (the tiny model configs).  The stage itself is
:mod:`filterbench.harness.stages.train`.
"""

from filterbench.harness.training.models import MODEL_CONFIG_DIR, register_model_configs
from filterbench.harness.training.plan import TrainError

__all__ = ["MODEL_CONFIG_DIR", "TrainError", "register_model_configs"]
