"""What every client command shares: the connection options, the session it runs with,
and one place that turns errors into a message on stderr and an exit code."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

from controller.client.config import ConfigError, Flags, resolve
from controller.client.http import ApiError, Client, Unreachable
from controller.client.output import Output, clean

EXIT_OK = 0
EXIT_FAILED = 1  # the controller refused (4xx other than below, 5xx), or a wait timed out
EXIT_USAGE = 2  # bad flags, no token, a config or token file that is unsafe or unreadable
EXIT_UNREACHABLE = 3  # no answer from the controller
EXIT_AUTH = 4  # 401 or 403: a wrong or expired token, or not allowed
EXIT_NOT_FOUND = 5  # 404: no such bot or pool (or not yours)
EXIT_INTERRUPTED = 130  # Ctrl-C


class Failed(Exception):
    """A command's own failure (a wait that timed out): message, exit code 1."""


def exit_code(status: int) -> int:
    if status in (401, 403):
        return EXIT_AUTH
    if status == 404:
        return EXIT_NOT_FOUND
    return EXIT_FAILED


@dataclass(slots=True)
class Session:
    api: Client
    out: Output


def fail(message: str, code: int) -> int:
    click.echo(f"ftpool: {clean(message)}", err=True)
    return code


def run(body: Callable[[], int | None]) -> int:
    """Run a command's body; every expected error is one line on stderr and its exit code."""
    try:
        return body() or EXIT_OK
    except ConfigError as exc:
        return fail(str(exc), EXIT_USAGE)
    except Unreachable as exc:
        return fail(str(exc), EXIT_UNREACHABLE)
    except ApiError as exc:
        return fail(f"the controller answered {exc.status}: {exc.message}", exit_code(exc.status))
    except Failed as exc:
        return fail(str(exc), EXIT_FAILED)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `ftpool bots ls | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return EXIT_OK


def client_command(func: Callable[..., int | None]) -> Callable[..., None]:
    """Give a command --url, --token, --token-file, --config and --json, and call it with
    a Session as its first argument; it exits with the code run() decides."""

    @click.option("--url", metavar="URL", help="the controller [FTPOOL_URL, config url]")
    @click.option("--token", metavar="TOKEN", help="API token; prefer --token-file [FTPOOL_TOKEN]")
    @click.option(
        "--token-file",
        metavar="FILE",
        help="a file (mode 0600) holding the token [FTPOOL_TOKEN_FILE]",
    )
    @click.option(
        "--config", metavar="FILE", help="config file [FTPOOL_CONFIG, ~/.config/ftpool/config.toml]"
    )
    @click.option("--json", "as_json", is_flag=True, help="print JSON for scripts")
    @functools.wraps(func)
    def command(
        url: str | None, token: str | None, token_file: str | None, config: str | None,
        as_json: bool, **kwargs: Any,
    ) -> None:  # fmt: skip
        def body() -> int | None:
            flags = Flags(url=url, token=token, token_file=token_file, config=config)
            session = Session(Client(resolve(flags, os.environ)), Output(as_json))
            return func(session, **kwargs)

        sys.exit(run(body))

    return command
