"""supervisord's XML-RPC API over its unix socket, without blocking the event loop.

xmlrpc.client is synchronous and its ServerProxy is not thread-safe, so every
call runs on one dedicated worker thread. Calls that could wait on a process
(start, stop) are always made with wait=False; callers poll instead.
"""

from __future__ import annotations

import asyncio
import http.client
import xmlrpc.client
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.xmlrpc import Faults, SupervisorTransport

from common.states import PROCESS_STATES_BY_NAME, ProcessState


class SupervisorError(Exception):
    """supervisord answered with a fault or could not be reached."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(slots=True)
class ProcessInfo:
    name: str
    state: ProcessState
    pid: int
    start: float
    stop: float
    exit_status: int

    @classmethod
    def from_rpc(cls, raw: dict[str, Any]) -> ProcessInfo:
        return cls(
            name=raw["name"],
            # supervisord has no other states; anything else is not a state we can act on.
            state=PROCESS_STATES_BY_NAME.get(raw["statename"], ProcessState.UNKNOWN),
            pid=raw["pid"],
            start=float(raw["start"]), stop=float(raw["stop"]), exit_status=raw["exitstatus"],
        )  # fmt: skip


class SupervisorClient:
    def __init__(self, socket_path: Path) -> None:
        self._transport = SupervisorTransport(serverurl=f"unix://{socket_path}")
        self._proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=self._transport)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="supervisor-rpc")

    async def _call(self, method: str, *args: Any) -> Any:
        def run() -> Any:
            try:
                return getattr(self._proxy.supervisor, method)(*args)
            except xmlrpc.client.Fault as fault:
                raise SupervisorError(fault.faultString, fault.faultCode) from None
            except (OSError, xmlrpc.client.Error, http.client.HTTPException) as exc:
                # The transport keeps its connection, half used: without a new one every
                # later call would fail (CannotSendRequest), even once supervisord is back.
                self._transport.close()
                raise SupervisorError(f"supervisord unreachable: {exc!r}") from None

        return await asyncio.get_running_loop().run_in_executor(self._executor, run)

    async def state(self) -> str:
        return (await self._call("getState"))["statename"]

    async def all_processes(self) -> dict[str, ProcessInfo]:
        infos = await self._call("getAllProcessInfo")
        return {i["name"]: ProcessInfo.from_rpc(i) for i in infos}

    async def reload_config(self) -> tuple[list[str], list[str], list[str]]:
        added, changed, removed = (await self._call("reloadConfig"))[0]
        return added, changed, removed

    async def add_group(self, name: str) -> None:
        await self._tolerate(Faults.ALREADY_ADDED, "addProcessGroup", name)

    async def remove_group(self, name: str) -> None:
        await self._tolerate(Faults.BAD_NAME, "removeProcessGroup", name)

    async def start(self, name: str) -> None:
        await self._tolerate(Faults.ALREADY_STARTED, "startProcess", name, False)

    async def stop(self, name: str) -> None:
        await self._tolerate(Faults.NOT_RUNNING, "stopProcess", name, False)

    async def tail_log(self, name: str, max_bytes: int) -> bytes:
        text, _offset, _overflow = await self._call("tailProcessStdoutLog", name, 0, max_bytes)
        return text.encode()

    async def _tolerate(self, ok_code: int, method: str, *args: Any) -> None:
        try:
            await self._call(method, *args)
        except SupervisorError as exc:
            if exc.code != ok_code:
                raise

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
