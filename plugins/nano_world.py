"""The nano world as a provider: worlds ``nano-xs`` and ``nano``, their model configs, inputs and CLI.

This module is the only door between the harness and :mod:`filterbench.harness.nano`:

* ``register_worlds``: world ``nano-xs`` (the xs build, default world of scale ``nano-xs``) and ``nano`` (the
  default build, default world of scale ``nano``), each built on first use under
  ``<workdir>/nano/<size>-<key>/`` with its phases logged;
* ``register_model_configs``: the reference models' architectures (``nano-ref-b32``, ``nano-ref-l14``,
  ``nano-ref-dino``), which scorers load through ``world:<role>`` assets (``filterbench.harness.assets``);
* ``register_commands``: ``filterbench nano build|info`` (:mod:`filterbench.plugins.nano_cli`);
* named inputs ``nano`` / ``nano:<size>`` (target features of the downstream set) and concept vocabulary
  ``nano[:<size>]`` for :mod:`filterbench.harness.targets`, registered when this plugin loads.
"""

from __future__ import annotations

import functools
from pathlib import Path
from types import MappingProxyType

from filterbench.harness.hookspecs import hookimpl
from filterbench.harness.worlds import World, WorldSource

#: world name -> nano build size; each world is also the default world of the scale of the same name
WORLDS = {"nano-xs": "xs", "nano": "default"}
DESCRIPTIONS = {"nano-xs": "the embedded nano world, xs build (8,000 pairs; tests and a quick look)",
                "nano": "the embedded nano world (64,000 pairs; the nano calibration board)"}


@hookimpl
def register_worlds(register, workdir):
    for name, size in WORLDS.items():
        register(WorldSource(name, DESCRIPTIONS[name], open=functools.partial(open_world, name, size, workdir),
                             locate=functools.partial(locate_world, name, size, workdir), scales=(name,)))


@hookimpl
def register_model_configs(register):
    from filterbench.harness.nano.refmodels import MODEL_CONFIG_DIR

    register(MODEL_CONFIG_DIR)


@hookimpl
def register_commands(cli):
    from filterbench.plugins.nano_cli import nano

    cli.add_command(nano)


def world_folder(size: str, workdir: Path) -> Path:
    """Where the build of ``size`` lives: ``<workdir>/nano/<size>-<key>`` (the key hashes what shapes it)."""
    from filterbench.harness.nano.build import world_key
    from filterbench.harness.nano.world import get_config

    return Path(workdir) / "nano" / f"{size}-{world_key(get_config(size))}"


def open_world(name: str, size: str, workdir: Path, log=None) -> World:
    """Build the world on first use (phases and timings go to ``log``), then describe it."""
    from filterbench.harness.nano import build_world

    return as_world(name, build_world(size, out=world_folder(size, workdir), log=log))


def locate_world(name: str, size: str, workdir: Path) -> World | None:
    from filterbench.harness.nano import NanoWorld
    from filterbench.harness.nano.build import is_complete

    folder = world_folder(size, workdir)
    return as_world(name, NanoWorld(folder)) if is_complete(folder) else None


def as_world(name: str, built) -> World:
    """A built :class:`~filterbench.harness.nano.NanoWorld` as a harness :class:`World`.

    Its recipes' inputs are pool-local (``pool/targets/imagenet_train.npz``, ``pool/targets/imagenet21k.txt``),
    so the world declares them as inputs too, which makes ``world check`` verify them.
    """
    targets = built.pool_dir / "targets"
    inputs = {"imagenet_train": targets / "imagenet_train.npz", "imagenet21k": targets / "imagenet21k.txt"}
    return World(name, built.pool_dir, built.evalsets_dir, str(built.tasklist), MappingProxyType(inputs),
                 built.oracle_dir)


# -- named inputs for filterbench.harness.targets ------------------------------------------------------------
def _built(arg: str):
    from filterbench.harness.nano import get_world

    return get_world(arg) if arg else get_world()


def _targets(arg: str, feature: str) -> list[Path]:
    return [_built(arg).downstream_features]


def _concepts(arg: str) -> Path:
    return _built(arg).concepts


def _register_inputs() -> None:
    from filterbench.harness.targets import register_concept_set, register_target_set

    register_target_set("nano", _targets)
    register_concept_set("nano", _concepts)


_register_inputs()
