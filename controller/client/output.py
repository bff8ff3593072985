"""What the commands print: tables and key-value lists for people (rich), JSON for scripts.

Everything shown comes from the controller and, for logs and events, from bots: control
characters are replaced before they reach a terminal (a log line cannot move the cursor or
retitle the window), and rich's markup is never interpreted in it.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Sequence
from typing import IO, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

# C0 and C1 controls but tab and newline; ESC starts every terminal escape sequence.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Not a terminal: rows stay on one line each, for grep and awk.
PIPE_WIDTH = 240


def clean(text: str) -> str:
    return _CONTROL.sub("\ufffd", text)


def size(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


def text(value: Any) -> str:
    """A cell: '-' for nothing, yes/no for booleans, the value's text otherwise."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


class Output:
    def __init__(self, as_json: bool = False, file: IO[str] | None = None) -> None:
        self.as_json = as_json
        self.file = file or sys.stdout
        terminal = self.file.isatty()
        width = None if terminal else max(int(os.environ.get("COLUMNS") or 0), PIPE_WIDTH)
        self.console = Console(
            file=self.file, width=width, markup=False, highlight=False, emoji=False,
            soft_wrap=not terminal,
        )  # fmt: skip

    def json(self, data: Any) -> None:
        self.file.write(json.dumps(data, indent=2) + "\n")
        self.file.flush()

    def json_line(self, data: Any) -> None:
        self.file.write(json.dumps(data, separators=(",", ":")) + "\n")
        self.file.flush()

    def line(self, value: str = "") -> None:
        self.console.print(Text(clean(value)))

    def raw(self, value: str) -> None:
        """Text as it came (a log), controls replaced, no newline added."""
        self.file.write(clean(value))
        self.file.flush()

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[Any]], empty: str) -> None:
        if not rows:
            self.line(empty)
            return
        # No lines around or under the header, as `docker ps` prints: awk reads it too.
        table = Table(box=None, pad_edge=False, header_style="bold")
        for name in columns:
            table.add_column(name, no_wrap=True, overflow="fold")
        for row in rows:
            table.add_row(*(Text(clean(text(cell))) for cell in row))
        self._print(table)

    def fields(self, pairs: Sequence[tuple[str, Any]]) -> None:
        """A key-value list: one `key  value` line each."""
        table = Table(box=None, show_header=False, pad_edge=False)
        table.add_column(style="bold", no_wrap=True)
        table.add_column(overflow="fold")
        for key, value in pairs:
            table.add_row(Text(key), Text(clean(text(value))))
        self._print(table)

    def _print(self, table: Table) -> None:
        """A table without the spaces rich pads its last column with."""
        with self.console.capture() as captured:
            self.console.print(table)
        lines = captured.get().split("\n")
        self.file.write("\n".join(line.rstrip() for line in lines))
        self.file.flush()
