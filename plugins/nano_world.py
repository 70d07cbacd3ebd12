"""The nano world's reference-model architectures (``nano-ref-b32``, ``nano-ref-l14``, ``nano-ref-dino``).

A nano world's ``manifest.json`` names its reference models by open_clip config name; scorers that load them
(``world:b32`` and the like, see ``filterbench.harness.assets``) need those configs in open_clip's registry,
and this plugin registers their folder.
"""

from __future__ import annotations

from filterbench.harness.hookspecs import hookimpl


@hookimpl
def register_model_configs(register):
    from filterbench.harness.nano.refmodels import MODEL_CONFIG_DIR

    register(MODEL_CONFIG_DIR)
