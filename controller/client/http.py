"""A small synchronous HTTP client of the controller (the standard library's urllib).

Every call sends the token as a Bearer header and never follows a redirect (which would
carry the token elsewhere). Errors become ApiError (the controller answered 4xx/5xx, with
its JSON message) or Unreachable (no answer at all); neither mentions the token.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

from controller.client.config import Connection

TIMEOUT = 30.0
# A stream idles at most 15 s between keepalives; a silent minute means it is gone.
STREAM_TIMEOUT = 60.0


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class Unreachable(Exception):
    """No answer from the controller: refused, timed out, or the connection broke."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None  # the 3xx surfaces as an HTTPError


def segment(value: str) -> str:
    """One path segment, quoted: an id from the command line cannot reach another route."""
    return urllib.parse.quote(value, safe="")


def error_message(status: int, body: bytes) -> str:
    """The controller's {"error": ...}, or the start of whatever else it sent."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return data["error"]
    text = body.decode("utf-8", "replace").strip()
    return text[:200] or http.client.responses.get(status, "error")


class Client:
    def __init__(self, connection: Connection, timeout: float = TIMEOUT) -> None:
        self.url = connection.url
        self._token = connection.token
        self.timeout = timeout
        self._opener = urllib.request.build_opener(_NoRedirect)

    def open(
        self, method: str, path: str, *, query: dict[str, Any] | None = None,
        body: Any = None, headers: dict[str, str] | None = None, timeout: float | None = None,
    ) -> http.client.HTTPResponse:  # fmt: skip
        """The open response of a successful call; the caller reads and closes it."""
        url = self.url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self._token}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            return self._opener.open(request, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as exc:
            with exc:
                raise ApiError(exc.code, error_message(exc.code, exc.read())) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise Unreachable(f"cannot reach the controller at {self.url}: {reason}") from None

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """A JSON answer."""
        try:
            with self.open(method, path, **kwargs) as response:
                raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise Unreachable(f"lost the controller at {self.url}: {exc}") from None
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            raise ApiError(502, f"not JSON from {self.url}{path}") from None

    def get(self, path: str, **query: Any) -> Any:
        return self.call("GET", path, query=query)

    def post(self, path: str, body: Any = None) -> Any:
        return self.call("POST", path, body=body)

    def delete(self, path: str, **query: Any) -> Any:
        return self.call("DELETE", path, query=query)

    def text(self, path: str, **query: Any) -> bytes:
        """A text answer, as bytes (a log tail may end inside a character)."""
        try:
            with self.open("GET", path, query=query, headers={"Accept": "text/plain"}) as r:
                return r.read()
        except (OSError, http.client.HTTPException) as exc:
            raise Unreachable(f"lost the controller at {self.url}: {exc}") from None

    def lines(self, path: str, headers: dict[str, str], **query: Any) -> Iterator[str]:
        """The lines of a streamed answer (Server-Sent Events), until the controller ends it."""
        headers = {"Accept": "text/event-stream", **headers}
        response = self.open("GET", path, query=query, headers=headers, timeout=STREAM_TIMEOUT)
        with response:
            try:
                for raw in response:
                    yield raw.decode("utf-8", "replace").rstrip("\r\n")
            except (OSError, http.client.HTTPException) as exc:
                raise Unreachable(f"lost the controller at {self.url}: {exc}") from None
