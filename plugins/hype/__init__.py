"""HYPE: hyperbolic entailment filtering.

Modules: :mod:`.lorentz` (the Lorentz model's operations), :mod:`.model` (a MERU-style hyperbolic CLIP on
open_clip towers, its loss and checkpoints), :mod:`.scorer` (the ``hype`` and ``hype_composite`` scorers).
"""

from filterbench.harness.hookspecs import hookimpl


@hookimpl
def register_scorers(register):
    from filterbench.plugins.hype.scorer import HypeCompositeScorer, HypeScorer

    register(HypeScorer)
    register(HypeCompositeScorer)
