"""The `ftpool` command: `ftpool controller`, `ftpool agent`, `ftpool migrate ...` or
`ftpool upgrade ...`."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ftpool",
        description="Run FreqTrade bots in shared pools. Settings come from the environment "
        "and a .env file; see docs/settings.md.",
    )
    commands = ["controller", "agent", "migrate", "upgrade"]
    parser.add_argument("command", choices=commands, help="what to run")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="migrate's or upgrade's flags")
    args = parser.parse_args(argv)
    if args.command == "migrate":
        from controller.migration.cli import main as migrate

        return migrate(args.args)
    if args.command == "upgrade":
        from controller.upgrade.cli import main as upgrade

        return upgrade(args.args)
    if args.args:
        parser.error(f"{args.command} takes no arguments")
    if args.command == "controller":
        from controller.__main__ import main as run
    else:
        from agent.__main__ import main as run
    return run()


if __name__ == "__main__":
    sys.exit(main())
