"""Local DataComp downloads as worlds: every description under ``<workdir>/worlds/`` that
``filterbench world add`` wrote (:mod:`filterbench.harness.localworlds`) becomes a world of that name.

The parts are on disk already, so opening one builds nothing.
"""

from __future__ import annotations

from filterbench.harness.hookspecs import hookimpl
from filterbench.harness.worlds import WorldSource


@hookimpl
def register_worlds(register, workdir):
    from filterbench.harness.localworlds import stored_worlds

    for world in stored_worlds(workdir):
        register(WorldSource(world.name, f"local DataComp download, pool {world.pool}",
                             open=lambda log, _w=world: _w, locate=lambda _w=world: _w))
