"""The controller's requests to an agent and their answers, matched by id: a bot's log
tail, a held bot's database put back from a snapshot, and a held bot's directory sent to
or received from the controller (pools on their node's own disk)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from common.protocol.fields import (
    MAX_FILE_BYTES,
    ProtocolError,
    check_hex,
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


FILES_OPS = ("export", "import")


@dataclass(slots=True)
class FilesRequest:
    """Controller asks the agent to send a held bot's directory (`export`: uploaded to the
    controller's /api/agents/files/<token>, then removed from the pool) or to receive one
    (`import`: downloaded from there, its sha256 checked, put in place); answered by a
    FilesResponse. The token is good for this one transfer only."""

    t = "files_request"
    id: int
    bot: str
    op: str
    token: str
    sha256: str = ""  # import: the archive's

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.id, "bot": self.bot, "op": self.op, "token": self.token,
                "sha256": self.sha256}  # fmt: skip

    @classmethod
    def from_wire(cls, m: dict[str, Any]) -> FilesRequest:
        op = short_str(m, "op", 16)
        if op not in FILES_OPS:
            raise ProtocolError("bad files op")
        sha = short_str(m, "sha256", 64)
        return cls(int_in(m, "id"), valid_id(m, "bot"), op, check_hex(m.get("token")),
                   check_hex(sha) if sha else "")  # fmt: skip


@dataclass(slots=True)
class FilesResponse:
    t = "files_response"
    id: int
    error: str = ""
    absent: bool = False  # export: the pool has no directory of that bot (nothing sent)

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.id, "error": self.error, "absent": self.absent}

    @classmethod
    def from_wire(cls, m: dict[str, Any]) -> FilesResponse:
        return cls(int_in(m, "id"), short_str(m, "error", 1024), typed(m, "absent", bool))


Response = LogResponse | RestoreResponse | FilesResponse
