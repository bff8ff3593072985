"""Who holds the market-data proxy's port, read from this machine's own /proc: a socket
this test process listens on stands for the proxy's, or for a stranger's."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from agent.marketdata.holder import Holder, Listener, ProxyPort, judge, listeners, socket_inodes


@pytest.fixture
def listening() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock
    sock.close()


def test_judging_who_holds_the_port() -> None:
    mine, other = Listener(inode=10, uid=7), Listener(inode=11, uid=8)
    assert judge([], {10}, 7) == Holder.NONE
    assert judge([mine], {10, 12}, 7) == Holder.PROXY
    # Every listener must be the proxy's own: one more on the same port (IPv6) is a stranger.
    assert judge([mine, other], {10}, 7) == Holder.STRANGER
    assert judge([other], {10}, 8) == Holder.STRANGER  # its uid does not matter then
    # The proxy's sockets unreadable: the listeners' uid must be the proxy's.
    assert judge([mine], None, 7) == Holder.PROXY
    assert judge([mine, other], None, 7) == Holder.STRANGER
    assert judge([mine], None, None) == Holder.STRANGER


def test_the_kernels_tables_name_the_listening_socket(listening: socket.socket) -> None:
    port = listening.getsockname()[1]
    [found] = listeners(port)
    assert found.uid == os.getuid()
    assert found.inode in (socket_inodes(os.getpid()) or set())
    assert found.inode == os.fstat(listening.fileno()).st_ino
    assert socket_inodes(0) == set()


def test_the_proxy_holding_its_port_is_trusted(listening: socket.socket) -> None:
    port = ProxyPort(listening.getsockname()[1])
    assert port.check(os.getpid()).holder == Holder.PROXY and port.routed


def test_a_stranger_on_the_port_is_found_and_named(listening: socket.socket) -> None:
    port = ProxyPort(listening.getsockname()[1])
    # supervisord's proxy is another process (here this one's parent) or none at all.
    for proxy_pid in (os.getppid(), 0):
        verdict = port.check(proxy_pid)
        assert verdict.holder == Holder.STRANGER and not port.routed
        assert verdict.strangers == (os.getpid(),)


def test_nobody_on_the_port() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound, not listening: its port is free of listeners
    port = ProxyPort(sock.getsockname()[1])
    try:
        assert port.check(os.getpid()).holder == Holder.NONE and not port.routed
    finally:
        sock.close()
