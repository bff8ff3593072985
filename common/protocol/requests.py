"""The controller's requests to an agent and their answers, matched by id: a bot's log
tail, and a held bot's database put back from a snapshot."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from common.protocol.fields import (
    MAX_FILE_BYTES,
    ProtocolError,
    check_restore_point,
    int_in,
    short_str,
    typed,
    valid_id,
)


@dataclass(slots=True)
class LogRequest:
    """Controller asks for the tail of a bot's log; answered by a LogResponse with the same id."""

    t = "log_request"
    id: int
    bot: str
    max_bytes: int = 65536

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.id, "bot": self.bot, "max_bytes": self.max_bytes}

    @classmethod
    def from_wire(cls, m: dict[str, Any]) -> LogRequest:
        return cls(int_in(m, "id"), valid_id(m, "bot"), int_in(m, "max_bytes", 1, MAX_FILE_BYTES))


@dataclass(slots=True)
class LogResponse:
    t = "log_response"
    id: int
    data: bytes = b""
    error: str = ""

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.id, "data": self.data, "error": self.error}

    @classmethod
    def from_wire(cls, m: dict[str, Any]) -> LogResponse:
        data = typed(m, "data", bytes)
        if len(data) > MAX_FILE_BYTES:
            raise ProtocolError("log data too large")
        return cls(int_in(m, "id"), data, short_str(m, "error", 1024))


@dataclass(slots=True)
class RestoreRequest:
    """Controller asks the agent to put a held bot's database back from one of its
    snapshots (the current one is kept aside); answered by a RestoreResponse."""

    t = "restore_request"
    id: int
    bot: str
    db: str
    point: str

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.id, "bot": self.bot, "db": self.db, "point": self.point}

    @classmethod
    def from_wire(cls, m: dict[str, Any]) -> RestoreRequest:
        db, point = check_restore_point(m.get("db"), m.get("point"))
        return cls(int_in(m, "id"), valid_id(m, "bot"), db, point)


@dataclass(slots=True)
class RestoreResponse:
    t = "restore_response"
    id: int
    error: str = ""
    kept: str = ""  # where the database it replaced was put aside, in the bot's directory

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.id, "error": self.error, "kept": self.kept}

    @classmethod
    def from_wire(cls, m: dict[str, Any]) -> RestoreResponse:
        return cls(int_in(m, "id"), short_str(m, "error", 1024), short_str(m, "kept", 256))


Response = LogResponse | RestoreResponse
