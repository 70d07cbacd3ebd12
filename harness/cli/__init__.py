"""The ``filterbench`` command line.  One module per verb group; they parse arguments and call the stages."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from filterbench.harness.cli.common import one_line
from filterbench.harness.errors import FilterbenchError

# verb groups that other parts of the harness contribute; each module exports click commands named here
_OPTIONAL_COMMANDS = (
    ("filterbench.harness.cli.eval_cmds", ("evalsets",)),
    ("filterbench.harness.cli.train_cmds", ("train",)),
    ("filterbench.harness.cli.eval_stage_cmds", ("eval",)),
    ("filterbench.harness.cli.run_cmds", ("run",)),
    ("filterbench.harness.cli.world_cmds", ("world",)),
)


class RootGroup(click.Group):
    """The root group.  Plugins' commands (``register_commands``; the nano and leaderboard groups among them) are
    attached the first time any command is looked up, so the group is complete however it is invoked; a usage
    error (bad option value, missing argument) is one line too, exit 2."""

    def get_command(self, ctx: click.Context, cmd_name: str):
        _attach_plugin_commands_once()
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        _attach_plugin_commands_once()
        return super().list_commands(ctx)

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as exc:
            ctx = getattr(exc, "ctx", None)
            hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            click.echo(f"error: {one_line(exc.format_message())}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("interrupted", err=True)
            sys.exit(130)
        sys.exit(rv if isinstance(rv, int) else 0)  # an int here is the exit code of --help, --version, ...


@click.group(cls=RootGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--debug", is_flag=True, help="Show full tracebacks.")
@click.version_option(package_name="filterbench")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """filterbench: compare CLIP data-filtering methods under a fixed pool, training budget and evaluation.

    \b
    Typical chain:
      filterbench score clip_score --pool POOL -p model=l14
      filterbench sample top_fraction --scores <score key> -p fraction=0.3
      filterbench train <selection key> --scale nano-xs
      filterbench eval <train key>
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def _attach_builtin() -> None:
    from filterbench.harness.cli import plugin_cmds, stage_cmds

    for command in (plugin_cmds.plugins, plugin_cmds.ls, stage_cmds.score, stage_cmds.sample, stage_cmds.show,
                    stage_cmds.validate, stage_cmds.pool, stage_cmds.run_unit):
        cli.add_command(command)
    for module_name, names in _OPTIONAL_COMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # that part of the harness is not installed in this build
            raise
        for name in names:
            command = getattr(module, name, None)
            if command is not None and name not in cli.commands:
                cli.add_command(command, name)


_ATTACHED = False


def _attach_plugin_commands_once() -> None:
    global _ATTACHED
    if not _ATTACHED:
        _ATTACHED = True
        _attach_plugin_commands()


def _attach_plugin_commands() -> None:
    from filterbench.harness.manager import get_plugins

    from filterbench.harness.errors import PluginError

    before = dict(cli.commands)
    get_plugins().call_hook("register_commands", lambda owner: {"cli": cli})  # a raising plugin is skipped
    replaced = [name for name, command in before.items() if cli.commands.get(name) is not command]
    if replaced:
        cli.commands.update(before)  # click replaces silently; keep the harness's own commands
        raise PluginError(f"a plugin's register_commands tried to replace existing command(s) {replaced}")


_attach_builtin()


def main() -> None:
    """Console entry point."""
    from filterbench.harness.cli.common import install_signal_handlers

    install_signal_handlers()
    try:
        _attach_plugin_commands_once()
    except FilterbenchError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    cli(prog_name="filterbench")
