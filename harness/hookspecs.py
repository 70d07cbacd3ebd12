"""Hook specifications: the contract between the harness and its plugins.

This module is the reference manual.  A plugin is a module (or object) with functions decorated by
``filterbench.hookimpl`` whose names match the specs below.  Plugins are found through the ``filterbench``
entry-point group (built-in plugins included: they enter through the same door), each loaded in isolation:
a plugin that fails to import is listed with its error by ``filterbench plugins`` and is fatal only when a run
needs one of its names, or when ``FILTERBENCH_STRICT_PLUGINS=1``.

Hooks are called with keyword arguments only.  An implementation may accept a subset of a spec's arguments,
which lets new arguments be added to a spec without breaking existing plugins.

Order: all ``register_*`` hooks run once per process, the first time a registry is needed, in plugin
registration order (entry points sorted by name).  Registration order carries no meaning: duplicate names are
an error, never an override.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pluggy

PROJECT = "filterbench"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_scorers(register: Callable[..., None]) -> None:
    """Register scorer classes.

    Called once per process, when the scorer registry is first needed (``filterbench ls scorers``, a score
    stage, :func:`filterbench.get_scorer`).

    Args:
        register: call ``register(ScorerClass)`` or ``register(ScorerClass, aliases=("old_name",))`` once per
            class.  The class must subclass :class:`filterbench.Scorer` and carry a unique snake_case ``name``.

    Returns:
        Nothing; the return value is ignored.

    Raises:
        A duplicate name (across all plugins) is a hard error naming both plugins.

    Example::

        @filterbench.hookimpl
        def register_scorers(register):
            register(CaptionLengthScorer)
    """


@hookspec
def register_samplers(register: Callable[..., None]) -> None:
    """Register sampler classes.

    Called once per process, when the sampler registry is first needed.

    Args:
        register: call ``register(SamplerClass)`` (or with ``aliases=...``) once per class; the class must
            subclass :class:`filterbench.Sampler` and set ``mode`` to ``subset``, ``multiset`` or ``schedule``.

    Returns:
        Nothing; the return value is ignored.
    """


@hookspec
def register_model_configs(register: Callable[..., None]) -> None:
    """Register folders of open_clip model configs (``<name>.json`` files with ``embed_dim``, ``vision_cfg``
    and ``text_cfg``) that scorers and worlds name as architectures.

    Called once per process, the first time a learned scorer loads an open_clip model by name
    (:func:`filterbench.harness.assets.load_model`); each folder is added to open_clip's registry once.

    Args:
        register: call ``register(path)`` once per folder.

    Returns:
        Nothing; the return value is ignored.

    Example::

        @filterbench.hookimpl
        def register_model_configs(register):
            register(Path(__file__).parent / "model_configs")
    """


@hookspec
def register_worlds(register: Callable[..., None], workdir: Path) -> None:
    """Register worlds: a pool with its eval sets, task list, named inputs and optional oracle.

    Called once per command that needs a world (``filterbench run``, ``world ls``, a stage command given
    ``--world``), before any world is opened.  Registering must be cheap: a world that has to be built or
    downloaded is built only when :attr:`WorldSource.open` is called.

    Args:
        register: call ``register(WorldSource(...))`` (:class:`filterbench.harness.worlds.WorldSource`) once
            per world.  ``scales=("nano",)`` makes the world the default of those scales.
        workdir: the artifact store of the command (``--workdir`` / ``$FILTERBENCH_HOME``); providers keep
            their worlds, or the descriptions of them, there.

    Returns:
        Nothing; the return value is ignored.

    Raises:
        A duplicate world name, or a scale claimed by two worlds, is a hard error naming both.

    Example::

        @filterbench.hookimpl
        def register_worlds(register, workdir):
            world = World("laion-local", pool=Path("/data/laion/pool"), evalsets=Path("/data/evalsets"))
            register(WorldSource("laion-local", "a local LAION pool", open=lambda log: world))
    """


@hookspec
def register_executors(register: Callable[..., None]) -> None:
    """Register executors: other engines that run a stage's units (``--executor NAME``; docs/scale.md).

    The harness's own (``inline``, ``local``, ``ray``, ``slurm``) are always there and cannot be replaced.
    Called the first time a command asks for an executor that is not one of them.

    Args:
        register: call ``register(cls)`` once per class.  The class subclasses
            :class:`filterbench.harness.executor.Executor`, sets a snake_case ``name``, implements ``imap`` (run a
            :class:`~filterbench.harness.executor.Task` over units, yield ``(index, result)`` as they finish) and
            may override ``from_spec(spec, workdir)`` to read the command's options (``--workers``, ...).

    Returns:
        Nothing; the return value is ignored.

    Raises:
        A duplicate name, or a class that is not an Executor, is a hard error naming the plugin.

    Example::

        class DaskExecutor(Executor):
            name = "dask"

            def imap(self, task, units):
                client = distributed.Client()
                futures = {client.submit(task.run, u, retries=2): i for i, u in enumerate(units)}
                for future in distributed.as_completed(futures):
                    yield futures[future], future.result()

        @filterbench.hookimpl
        def register_executors(register):
            register(DaskExecutor)
    """


@hookspec
def records_written(records_dir: Path, records: list[Path]) -> dict[str, Path] | None:
    """Observe the records a ``filterbench run`` has written (the leaderboard rebuilds its board here).

    Called once per ``run`` invocation that reached the eval stage, in the main process, after every run of
    the invocation finished and its record was written.

    Args:
        records_dir: the records folder (``--records``, default ``<workdir>/records``).
        records: the record files this invocation wrote.

    Returns:
        What the implementation produced, as label -> path (``run`` prints ``<label>: <path>``), or None.
    """


@hookspec
def register_commands(cli: Any) -> None:
    """Add sub-commands to the ``filterbench`` command line.

    Called once when the CLI is built, after the built-in commands exist.

    Args:
        cli: the root :class:`click.Group`; add commands with ``@cli.command()`` or ``cli.add_command(...)``.

    Returns:
        Nothing; the return value is ignored.  A command whose name is already taken is an error.
    """


@hookspec
def stage_finished(stage: str, manifest: dict) -> None:
    """Observe a stage that has just committed its artifact (for loggers, dashboards, notifications).

    Called in the main process after the artifact folder was renamed into place, once per stage run
    (not when a completed stage is reused).

    Args:
        stage: ``"pool"``, ``"fit"`` (a learned scorer's fitted state), ``"score"``, ``"sample"``, ``"train"``
            or ``"eval"``.
        manifest: the artifact's manifest as a dict (read-only by convention).

    Returns:
        Ignored.  An exception raised here is logged as a warning and never fails the stage.
    """
