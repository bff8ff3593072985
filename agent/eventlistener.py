"""The pool's supervisord event listener: every process-state change goes on to the agent.

    eventlistener.py --socket PATH

supervisord runs it as `[eventlistener:agent-events]` with `events=PROCESS_STATE` and speaks
its listener protocol on our stdin and stdout (supervisor/childutils.py, supervisor/events.py):
we write `READY\\n`; it writes one header line of `key:value` tokens, for instance

    ver:3.0 server:supervisor serial:21 pool:agent-events poolserial:10
    eventname:PROCESS_STATE_EXITED len:71          (one line, folded here)

and then exactly `len` bytes of payload, for instance

    processname:bot-a groupname:bot-a from_state:RUNNING expected:0 pid:2766

and we answer `RESULT 2\\nOK` before the next READY. Each event goes on to the agent as one
datagram, `<STATE> <processname> <pid>\\n` (pid 0 when the event names none), sent without
waiting: when nothing listens (an agent of the previous version, or one restarting) or the
agent's queue is full, the event is dropped, and the agent's poll of supervisord finds the
change. The datagram is only a hint to look now: the agent believes supervisord itself.

Bounded and strict: a header line longer than MAX_HEADER, one that is not `key:value`
tokens, or a `len` above MAX_PAYLOAD means the stream cannot be trusted, and the listener
exits (supervisord starts it again); a payload that names no valid state or program is
answered OK and not forwarded. stdout carries the protocol and nothing else; diagnostics go
to stderr. Runs isolated (`-I`), on the standard library only.
"""

from __future__ import annotations

import re
import socket
import sys
from collections.abc import Callable
from io import BufferedIOBase

SOCKET_NAME = "events.sock"  # in the pool's run directory, beside the preloader's socket
MAX_HEADER = 512
MAX_PAYLOAD = 4096
MAX_DATAGRAM = 256
READY = b"READY\n"
OK = b"RESULT 2\nOK"
# supervisord's process states, as its PROCESS_STATE_<STATE> event names end.
STATES = frozenset({
    "STOPPED", "STARTING", "RUNNING", "BACKOFF", "STOPPING", "EXITED", "FATAL", "UNKNOWN",
})  # fmt: skip
_STATE_EVENT = "PROCESS_STATE_"
_TOKEN = re.compile(rb"\A([a-z_]{1,32}):([!-~]{0,256})\Z")
# Program names as ftpool writes them (bot-<id>, preloader, agent, ...): no spaces, no
# separators that could be mistaken for more fields.
PROGRAM = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}\Z")
_PID = re.compile(r"\A[0-9]{1,10}\Z")


class ProtocolError(ValueError):
    """supervisord's stream is not what its protocol says: it cannot be followed further."""


def tokens(line: bytes) -> dict[str, str]:
    """`key:value key:value ...` (printable ASCII, no spaces in a value) as a dict."""
    found: dict[str, str] = {}
    for token in line.split():
        match = _TOKEN.match(token)
        if match is None:
            raise ProtocolError(f"bad token {token[:40]!r}")
        key = match.group(1).decode()
        if key in found:
            raise ProtocolError(f"token {key} given twice")
        found[key] = match.group(2).decode()
    return found


def parse_header(line: bytes) -> tuple[str, int]:
    """The event's name and payload length, from one header line (its newline included)."""
    if len(line) > MAX_HEADER or not line.endswith(b"\n"):
        raise ProtocolError("header line too long or cut short")
    headers = tokens(line)
    name, length = headers.get("eventname", ""), headers.get("len", "")
    if not name or not length.isdigit() or len(length) > 6:
        raise ProtocolError("header without eventname or len")
    if int(length) > MAX_PAYLOAD:
        raise ProtocolError(f"payload of {length} bytes is more than {MAX_PAYLOAD}")
    return name, int(length)


def datagram(eventname: str, payload: bytes) -> bytes | None:
    """What the agent is told of one event, or None for an event not worth telling."""
    if not eventname.startswith(_STATE_EVENT) or eventname[len(_STATE_EVENT) :] not in STATES:
        return None
    try:
        # A process-state payload is one line of tokens; other events may add a body.
        fields = tokens(payload.split(b"\n", 1)[0])
    except ProtocolError:
        return None
    name, pid = fields.get("processname", ""), fields.get("pid", "0")
    if not PROGRAM.match(name) or not _PID.match(pid):
        return None
    return f"{eventname[len(_STATE_EVENT) :]} {name} {int(pid)}\n".encode()


def read_exactly(stream: BufferedIOBase, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


class Forwarder:
    """Datagrams to the agent's socket, never waiting for it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sent = self.dropped = 0
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.setblocking(False)

    def send(self, message: bytes) -> None:
        try:
            self._socket.sendto(message, self.path)
            self.sent += 1
        except OSError as exc:  # no agent listening, or its queue is full
            self.dropped += 1
            if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                say(f"event not delivered ({exc.strerror}); {self.dropped} so far")


def say(message: str) -> None:
    print(f"eventlistener: {message}", file=sys.stderr, flush=True)


def serve(stdin: BufferedIOBase, stdout: BufferedIOBase, send: Callable[[bytes], None]) -> int:
    """Follow the protocol until supervisord closes our stdin (0) or breaks it (2)."""
    while True:
        stdout.write(READY)
        stdout.flush()
        line = stdin.readline(MAX_HEADER + 1)
        if not line:
            return 0
        try:
            eventname, length = parse_header(line)
        except ProtocolError as exc:
            say(f"leaving: {exc}")
            return 2
        payload = read_exactly(stdin, length)
        if payload is None:
            return 0
        message = datagram(eventname, payload)
        if message is not None:
            send(message)
        stdout.write(OK)
        stdout.flush()


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "--socket" or not argv[1].startswith("/"):
        say("usage: eventlistener.py --socket /ABSOLUTE/PATH")
        return 2
    if len(argv[1].encode()) > 107:  # sun_path
        say("socket path too long")
        return 2
    return serve(sys.stdin.buffer, sys.stdout.buffer, Forwarder(argv[1]).send)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
