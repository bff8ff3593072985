"""A stand-in for supervisord's XML-RPC on its unix socket, served from a thread."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer


class _UnixXMLRPCServer(SimpleXMLRPCServer):
    address_family = socket.AF_UNIX


class _Handler(SimpleXMLRPCRequestHandler):
    disable_nagle_algorithm = False  # a TCP option: not for a unix socket

    def address_string(self) -> str:  # a unix socket's peer has no address
        return "unix"


@contextlib.contextmanager
def serving(path: Path, processes: list[dict[str, object]] | None = None) -> Iterator[None]:
    """supervisord answers on `path` (getState, getAllProcessInfo) until the block ends."""
    server = _UnixXMLRPCServer(str(path), _Handler, logRequests=False)
    server.register_function(lambda: {"statename": "RUNNING"}, "supervisor.getState")
    server.register_function(lambda: processes or [], "supervisor.getAllProcessInfo")
    thread = threading.Thread(target=server.serve_forever, name="fake-supervisord", daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        path.unlink(missing_ok=True)
