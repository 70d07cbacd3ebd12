"""FLYT and M-FLYT: learned data filters trained so that the reference model they weight tests well downstream.

Modules: :mod:`.loss` (weighted CLIP loss, downstream losses), :mod:`.adamw` (the inner AdamW step and its
Jacobian), :mod:`.bilevel` (one step's hypergradient), :mod:`.dist` (global-batch semantics over ranks),
:mod:`.data` (seeded per-step batches), :mod:`.heads` (scoring models, released checkpoints), :mod:`.trainer`
(the loop, checkpoints), :mod:`.fitting` (the fit stage), :mod:`.scorers` (the plugin classes), :mod:`.worker`
(a torchrun rank), :mod:`.probe` (``filterbench flyt-probe``: what the objective prefers on a pool).
docs/methods/flyt.md describes the method, the choices and the nano results.
"""

from __future__ import annotations

from filterbench.harness.hookspecs import hookimpl


@hookimpl
def register_scorers(register):
    from filterbench.plugins.flyt.scorers import FlytScorer, MFlytScorer

    register(FlytScorer)
    register(MFlytScorer)


@hookimpl
def register_commands(cli):
    from filterbench.plugins.flyt.probe import probe_group

    cli.add_command(probe_group)

