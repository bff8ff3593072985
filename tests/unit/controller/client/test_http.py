"""The client's HTTP calls against a real (standard library) server on loopback: the token
is sent, the controller's error message comes back, a redirect is never followed."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from controller.client.config import Connection
from controller.client.http import ApiError, Client, Unreachable

TOKEN = "t" * 40


class Handler(BaseHTTPRequestHandler):
    seen: list[tuple[str, str | None]] = []

    def log_message(self, *args: object) -> None:
        pass

    def answer(self, status: int, body: bytes, **headers: str) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        Handler.seen.append((self.path, self.headers.get("Authorization")))
        if self.path == "/ok?limit=5":
            self.answer(200, b'{"success": true}')
        elif self.path == "/moved":
            self.answer(302, b"", Location=f"http://127.0.0.1:{self.server.server_port}/elsewhere")
        elif self.path == "/stream":
            self.answer(200, b"id: 1\ndata: {}\n\n")
        else:
            self.answer(404, json.dumps({"success": False, "error": "bot x not found"}).encode())


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    Handler.seen = []
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


def test_calls_send_the_token_and_errors_carry_the_message(server: str) -> None:
    client = Client(Connection(server, TOKEN))
    assert client.get("/ok", limit=5, since=None) == {"success": True}
    assert Handler.seen == [("/ok?limit=5", f"Bearer {TOKEN}")]
    with pytest.raises(ApiError) as exc:
        client.get("/api/bots/x")
    assert (exc.value.status, exc.value.message) == (404, "bot x not found")
    assert list(client.lines("/stream", {})) == ["id: 1", "data: {}", ""]


def test_a_redirect_is_not_followed(server: str) -> None:
    with pytest.raises(ApiError) as exc:
        Client(Connection(server, TOKEN)).get("/moved")
    assert exc.value.status == 302
    assert [path for path, _ in Handler.seen] == ["/moved"]  # the token went nowhere else


def test_no_server_is_unreachable() -> None:
    with pytest.raises(Unreachable, match=r"cannot reach the controller at http://127\.0\.0\.1:9"):
        Client(Connection("http://127.0.0.1:9", TOKEN)).get("/api/bots")
