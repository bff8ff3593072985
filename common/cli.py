"""The `ftpool` command: `ftpool controller|agent|migrate|upgrade ...` run ftpool itself, and
`ftpool bots|pools|events|status ...` are the client of a running controller (docs/cli.md).

Each subcommand is named in COMMANDS and imported only when it runs (`ftpool --help` shows
the summaries there): `ftpool agent` loads no client code. To add one, add its line to
COMMANDS: a click command or group, or the `main(argv) -> int` of a tool with its own
argument parser (argparse), which gets every argument after its name, --help included.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

import click

# name → ("module:attribute", what `ftpool --help` says of it); the attribute is a click
# command or group, or an argparse tool's main(argv).
COMMANDS: dict[str, tuple[str, str]] = {
    "controller": ("common.cli:controller", "run the controller"),
    "agent": ("common.cli:agent", "run a pool's agent"),
    "migrate": ("controller.migration.cli:main", "move bots from legacy containers into pools"),
    "upgrade": ("controller.upgrade.cli:main", "move pools to a new pool image, pool by pool"),
    "bots": ("controller.client.bots:bots", "list, create, start, stop, remove bots; their logs"),
    "pools": ("controller.client.pools:pools", "the pools, their bots and memory (admin)"),
    "nodes": ("controller.client.nodes:nodes", "the swarm's nodes; drain one (admin)"),
    "events": ("controller.client.events:events", "health transitions and recoveries; -f"),
    "status": ("controller.client.status:status", "the controller and the fleet at a glance"),
    "backup": ("controller.client.backups:backup", "a bot's restore points; restore its trades"),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported from COMMANDS when first asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        target, summary = COMMANDS[cmd_name]
        module_name, _, attribute = target.partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if isinstance(command, click.Command):
            return command
        return passthrough(cmd_name, command, summary)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The list from COMMANDS alone: `ftpool --help` imports none of them."""
        with formatter.section("Commands"):
            formatter.write_dl([(name, summary) for name, (_, summary) in COMMANDS.items()])


def passthrough(name: str, run: Callable[[list[str]], int], summary: str) -> click.Command:
    """A tool with its own argument parser as a subcommand: it parses every argument."""

    @click.command(
        name, help=summary, add_help_option=False,
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )  # fmt: skip
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def command(args: tuple[str, ...]) -> None:
        sys.exit(run(list(args)))

    return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Run FreqTrade bots in shared pools, and drive them. Settings of the controller and
    the agent come from the environment and a .env file (docs/settings.md); the client
    commands find the controller as docs/cli.md says."""


@click.command()
def controller() -> None:
    """Run the controller."""
    from controller.__main__ import main as run

    sys.exit(run())


@click.command()
def agent() -> None:
    """Run a pool's agent."""
    from agent.__main__ import main as run

    sys.exit(run())


def main(argv: list[str] | None = None) -> int:
    """Run `ftpool`; exits (SystemExit) with the command's code."""
    return cli.main(args=argv, prog_name="ftpool")


if __name__ == "__main__":
    sys.exit(main())
