"""The `ftpool` command: `ftpool controller|agent|migrate ...` run ftpool itself, and
`ftpool bots|pools|events|status ...` are the client of a running controller (docs/cli.md).

Each subcommand is a click command or group named in COMMANDS and imported only when it
runs (or when `ftpool --help` lists them): `ftpool agent` in a pool loads no client code.
To add one, write a module with a click command or group and add its line to COMMANDS.
"""

from __future__ import annotations

import importlib
import sys

import click

# name → "module:attribute" of a click command or group.
COMMANDS: dict[str, str] = {
    "controller": "common.cli:controller",
    "agent": "common.cli:agent",
    "migrate": "common.cli:migrate",
    "bots": "controller.client.bots:bots",
    "pools": "controller.client.pools:pools",
    "events": "controller.client.events:events",
    "status": "controller.client.status:status",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported from COMMANDS when first asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attribute = target.partition(":")
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
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


@click.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def migrate(args: tuple[str, ...]) -> None:
    """Move bots from legacy containers into pools, and back (--help for its flags)."""
    from controller.migration.cli import main as run

    sys.exit(run(list(args)))


def main(argv: list[str] | None = None) -> int:
    """Run `ftpool`; exits (SystemExit) with the command's code."""
    return cli.main(args=argv, prog_name="ftpool")


if __name__ == "__main__":
    sys.exit(main())
