"""Reconciler.apply against an in-memory supervisord that reads the program files written."""

from __future__ import annotations

import asyncio
import os
import shlex
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from supervisor.options import UnhosedConfigParser
from supervisor.xmlrpc import Faults

from agent.pool_files import resolve_command
from agent.programs import ProgramOptions
from agent.reconcile import Reconciler
from agent.supervisor import ProcessInfo, SupervisorError
from common.protocol import BotSpec, Desired

RUNNING_STATES = {"RUNNING", "STARTING", "BACKOFF"}
STOPPED_STATES = {"STOPPED", "EXITED", "FATAL", "UNKNOWN"}


@dataclass
class Proc:
    config: dict[str, str]
    state: str = "STOPPED"
    pid: int = 0


class FakeSupervisor:
    """What supervisord does behind SupervisorClient, for the program files in programs_dir.

    reload_config compares the files on disk with the active process groups, as
    supervisord's reloadConfig does; add/remove/start/stop follow its rules (a running
    group cannot be removed) and the faults SupervisorClient tolerates are tolerated.
    A stop takes one poll to settle (STOPPING, then STOPPED).
    """

    def __init__(self, programs_dir: Path) -> None:
        self.programs_dir = programs_dir
        self.loaded: dict[str, dict[str, str]] = {}
        self.groups: dict[str, Proc] = {}
        self.started: list[str] = []
        self.stopped: list[str] = []
        self.removed: list[str] = []
        self._next_pid = 1000
        # Programs whose process is a real one (the test's own, holding a port): its pid.
        self.real_pids: dict[str, int] = {}

    def _read(self) -> dict[str, dict[str, str]]:
        configs: dict[str, dict[str, str]] = {}
        for path in sorted(self.programs_dir.glob("*.conf")):
            parser = UnhosedConfigParser()
            parser.read(str(path))
            for section in parser.sections():
                if section.startswith("program:"):
                    name = section.split(":", 1)[1]
                    configs[name] = {
                        k: parser.saneget(section, k, expansions={})
                        for k in parser.options(section)
                    }
        return configs

    async def reload_config(self) -> tuple[list[str], list[str], list[str]]:
        self.loaded = self._read()
        added = [n for n in self.loaded if n not in self.groups]
        changed = [n for n in self.loaded if n in self.groups and self.groups[n].config != self.loaded[n]]  # fmt: skip  # noqa: E501
        removed = [n for n in self.groups if n not in self.loaded]
        return added, changed, removed

    async def add_group(self, name: str) -> None:
        if name in self.groups:
            return  # ALREADY_ADDED, tolerated by the client
        if name not in self.loaded:
            raise SupervisorError("BAD_NAME", Faults.BAD_NAME)
        self.groups[name] = Proc(self.loaded[name])
        if self.loaded[name].get("autostart") == "true":
            await self.start(name)

    async def remove_group(self, name: str) -> None:
        proc = self.groups.get(name)
        if proc is None:
            return  # BAD_NAME, tolerated by the client
        if proc.state not in STOPPED_STATES:
            raise SupervisorError("STILL_RUNNING", Faults.STILL_RUNNING)
        del self.groups[name]
        self.removed.append(name)

    async def start(self, name: str) -> None:
        proc = self.groups.get(name)
        if proc is None:
            raise SupervisorError("BAD_NAME", Faults.BAD_NAME)
        if proc.state in RUNNING_STATES:
            return  # ALREADY_STARTED, tolerated by the client
        if proc.state == "STOPPING":
            raise SupervisorError("STILL_RUNNING", Faults.STILL_RUNNING)
        self._next_pid += 1
        proc.state, proc.pid = "RUNNING", self.real_pids.get(name, self._next_pid)
        self.started.append(name)

    async def stop(self, name: str) -> None:
        proc = self.groups.get(name)
        if proc is None:
            raise SupervisorError("BAD_NAME", Faults.BAD_NAME)
        if proc.state not in RUNNING_STATES:
            return  # NOT_RUNNING, tolerated by the client
        proc.state = "STOPPING"
        self.stopped.append(name)

    async def all_processes(self) -> dict[str, ProcessInfo]:
        out = {}
        for name, proc in self.groups.items():
            if proc.state == "STOPPING":
                proc.state, proc.pid = "STOPPED", 0
            out[name] = ProcessInfo(name, proc.state, proc.pid, 0.0, 0.0, 0)
        return out

    def state(self, bot_id: str) -> str:
        """The bot's state once a pending stop settled."""
        proc = self.groups.get(f"bot-{bot_id}")
        if proc is None:
            return "ABSENT"
        return "STOPPED" if proc.state == "STOPPING" else proc.state


def spec(bot_id: str = "b1", port: int = 9000, **over: Any) -> BotSpec:
    values: dict[str, Any] = {
        "id": bot_id,
        "port": port,
        "command": ["/bin/true", "--config", "config.json"],
        "files": {
            "config.json": f'{{"port": {port}}}'.encode(),
            "user_data/strategies/Sample.py": b"class Sample: ...\n",
        },
        "run": "running",
        "nonce": 0,
    }
    values.update(over)
    return BotSpec(**values)


@pytest.fixture
def pool_dir(tmp_path: Path) -> Path:
    return tmp_path / "pool"


@pytest.fixture
def fake(pool_dir: Path) -> FakeSupervisor:
    return FakeSupervisor(pool_dir / "programs")


def make_reconciler(fake: FakeSupervisor, pool_dir: Path, **kw: Any) -> Reconciler:
    return Reconciler(fake, pool_dir, ProgramOptions(log_dir=pool_dir / "logs"), **kw)  # type: ignore[arg-type]


@pytest.fixture
def rec(fake: FakeSupervisor, pool_dir: Path) -> Reconciler:
    return make_reconciler(fake, pool_dir)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def leftover_tmp_files(pool_dir: Path) -> list[Path]:
    return list(pool_dir.glob("**/.*.tmp"))


def write_state_file(pool_dir: Path, text: str) -> None:
    pool_dir.mkdir(parents=True)
    (pool_dir / "agent-state.json").write_text(text)


async def test_a_new_bot_gets_its_files_and_program_and_is_started(
    rec: Reconciler, fake: FakeSupervisor, pool_dir: Path
) -> None:
    changes = []
    rec._on_change = lambda: changes.append(rec.applied_gen)
    await rec.apply(Desired(3, [spec()]))

    bot_dir = pool_dir / "bots" / "b1"
    assert (bot_dir / "config.json").read_bytes() == b'{"port": 9000}'
    assert (bot_dir / "user_data/strategies/Sample.py").read_bytes() == b"class Sample: ...\n"
    for f in (bot_dir / "config.json", bot_dir / "user_data/strategies/Sample.py"):
        assert mode(f) == 0o600
    assert mode(bot_dir) & 0o077 == 0
    program = pool_dir / "programs" / "bot-b1.conf"
    assert mode(program) == 0o600
    config = fake.groups["bot-b1"].config
    assert shlex.split(config["command"]) == ["/bin/true", "--config", "config.json"]
    assert config["directory"] == str(bot_dir)
    assert config["autostart"] == "false"

    assert fake.started == ["bot-b1"]
    assert fake.state("b1") == "RUNNING"
    assert rec.applied_gen == 3
    assert changes == [3]
    assert not leftover_tmp_files(pool_dir)


async def test_applying_the_same_desired_twice_changes_nothing(
    rec: Reconciler, fake: FakeSupervisor, pool_dir: Path
) -> None:
    desired = Desired(1, [spec("b1", 9000), spec("b2", 9001)])
    await rec.apply(desired)
    assert sorted(fake.started) == ["bot-b1", "bot-b2"]
    config = pool_dir / "bots" / "b1" / "config.json"
    before = config.stat().st_mtime_ns
    pids = {n: p.pid for n, p in fake.groups.items()}

    await rec.apply(desired)
    await rec.apply(Desired(2, [spec("b1", 9000), spec("b2", 9001)]))
    assert sorted(fake.started) == ["bot-b1", "bot-b2"]
    assert fake.stopped == []
    assert {n: p.pid for n, p in fake.groups.items()} == pids
    assert config.stat().st_mtime_ns == before
    assert rec.applied_gen == 2


async def test_a_restarted_agent_does_not_restart_running_bots(
    rec: Reconciler, fake: FakeSupervisor, pool_dir: Path
) -> None:
    desired = Desired(1, [spec(nonce=4)])
    await rec.apply(desired)
    again = make_reconciler(fake, pool_dir)
    await again.apply(desired)
    assert fake.started == ["bot-b1"]
    assert fake.stopped == []


async def test_run_stopped_stops_the_bot(rec: Reconciler, fake: FakeSupervisor) -> None:
    await rec.apply(Desired(1, [spec()]))
    await rec.apply(Desired(2, [spec(run="stopped")]))
    assert fake.stopped == ["bot-b1"]
    assert fake.state("b1") == "STOPPED"
    await rec.apply(Desired(2, [spec(run="stopped")]))
    assert fake.stopped == ["bot-b1"]
    assert fake.started == ["bot-b1"]
    # And running again starts it once.
    await rec.apply(Desired(3, [spec()]))
    assert fake.started == ["bot-b1", "bot-b1"]
    assert fake.state("b1") == "RUNNING"


async def test_a_bot_that_should_be_stopped_is_never_started(
    rec: Reconciler, fake: FakeSupervisor
) -> None:
    await rec.apply(Desired(1, [spec(run="stopped")]))
    assert fake.started == []
    assert fake.state("b1") == "STOPPED"


async def test_a_nonce_bump_restarts_exactly_once_even_across_agent_restarts(
    rec: Reconciler, fake: FakeSupervisor, pool_dir: Path
) -> None:
    await rec.apply(Desired(1, [spec(nonce=0), spec("b2", 9001)]))
    first_pid = fake.groups["bot-b1"].pid
    await rec.apply(Desired(2, [spec(nonce=1), spec("b2", 9001)]))
    assert fake.stopped == ["bot-b1"]
    assert fake.started.count("bot-b1") == 2
    assert fake.groups["bot-b1"].pid != first_pid
    assert fake.state("b1") == "RUNNING"

    await rec.apply(Desired(2, [spec(nonce=1), spec("b2", 9001)]))
    state_file = pool_dir / "agent-state.json"
    assert mode(state_file) == 0o600
    # A new agent process reads the applied nonce from its state file.
    again = make_reconciler(fake, pool_dir)
    await again.apply(Desired(2, [spec(nonce=1), spec("b2", 9001)]))
    assert fake.stopped == ["bot-b1"]
    assert fake.started.count("bot-b1") == 2
    assert fake.started.count("bot-b2") == 1

    await again.apply(Desired(3, [spec(nonce=2), spec("b2", 9001)]))
    assert fake.started.count("bot-b1") == 3
    assert fake.started.count("bot-b2") == 1


async def test_a_first_seen_nonce_is_not_a_restart(rec: Reconciler, fake: FakeSupervisor) -> None:
    await rec.apply(Desired(1, [spec(nonce=7)]))
    assert fake.started == ["bot-b1"]
    assert fake.stopped == []


async def test_a_nonce_bump_while_stopped_does_not_restart_later(
    rec: Reconciler, fake: FakeSupervisor
) -> None:
    await rec.apply(Desired(1, [spec()]))
    await rec.apply(Desired(2, [spec(run="stopped", nonce=1)]))
    await rec.apply(Desired(3, [spec(run="running", nonce=1)]))
    assert fake.started == ["bot-b1", "bot-b1"]
    assert fake.stopped == ["bot-b1"]


async def test_an_unreadable_state_file_is_not_fatal(fake: FakeSupervisor, pool_dir: Path) -> None:
    write_state_file(pool_dir, "{not json")
    rec = make_reconciler(fake, pool_dir)
    await rec.apply(Desired(1, [spec()]))
    assert fake.started == ["bot-b1"]


async def test_a_removed_bot_is_stopped_unloaded_and_archived(
    rec: Reconciler, fake: FakeSupervisor, pool_dir: Path
) -> None:
    await rec.apply(Desired(1, [spec("b1", 9000), spec("b2", 9001)]))
    await rec.apply(Desired(2, [spec("b2", 9001)]))

    assert fake.stopped == ["bot-b1"]
    assert fake.removed == ["bot-b1"]
    assert "bot-b1" not in fake.groups
    assert not (pool_dir / "programs" / "bot-b1.conf").exists()
    assert not (pool_dir / "bots" / "b1").exists()
    [archived] = list((pool_dir / "archive").iterdir())
    assert archived.name.startswith("b1-")
    assert (archived / "config.json").read_bytes() == b'{"port": 9000}'
    # The other bot was not touched.
    assert fake.state("b2") == "RUNNING"
    assert fake.started.count("bot-b2") == 1
    assert (pool_dir / "bots" / "b2" / "config.json").exists()


async def test_a_held_bot_is_stopped_and_its_directory_left_alone(
    rec: Reconciler, fake: FakeSupervisor, pool_dir: Path
) -> None:
    await rec.apply(Desired(1, [spec("b1", 9000), spec("b2", 9001)]))
    await rec.apply(Desired(2, [spec("b1", 9000, run="held"), spec("b2", 9001)]))
    assert fake.stopped == ["bot-b1"] and "bot-b1" not in fake.groups
    assert not (pool_dir / "programs" / "bot-b1.conf").exists()
    assert (pool_dir / "bots" / "b1" / "config.json").exists()  # not archived
    # The controller moves the directory away; held, it is neither written nor archived.
    (pool_dir / "bots" / "b1").rename(pool_dir / "moved-b1")
    await rec.apply(Desired(3, [spec("b1", 9000, run="held"), spec("b2", 9001)]))
    assert not (pool_dir / "bots" / "b1").exists()
    assert list((pool_dir / "archive").iterdir()) == []
    # Moved back in and released, it runs again from its own files.
    (pool_dir / "moved-b1").rename(pool_dir / "bots" / "b1")
    await rec.apply(Desired(4, [spec("b1", 9000), spec("b2", 9001)]))
    assert fake.state("b1") == "RUNNING" and fake.started.count("bot-b1") == 2
    assert fake.started.count("bot-b2") == 1


async def test_a_purged_bot_is_deleted(
    rec: Reconciler, fake: FakeSupervisor, pool_dir: Path
) -> None:
    await rec.apply(Desired(1, [spec("b1", 9000), spec("b2", 9001)]))
    await rec.apply(Desired(2, [spec("b2", 9001)], purge=["b1"]))
    assert "bot-b1" not in fake.groups
    assert not (pool_dir / "bots" / "b1").exists()
    assert list((pool_dir / "archive").iterdir()) == []
    assert (pool_dir / "bots" / "b2").exists()


async def test_a_fatal_bot_is_not_started_by_reconcile(
    rec: Reconciler, fake: FakeSupervisor
) -> None:
    await rec.apply(Desired(1, [spec()]))
    fake.groups["bot-b1"].state = "FATAL"
    await rec.apply(Desired(2, [spec()]))
    assert fake.started == ["bot-b1"]
    assert fake.state("b1") == "FATAL"
    # The controller's restart decision (a nonce bump) does start it.
    await rec.apply(Desired(3, [spec(nonce=1)]))
    assert fake.started == ["bot-b1", "bot-b1"]
    assert fake.state("b1") == "RUNNING"


async def test_an_exited_bot_waits_for_the_controllers_restart(
    rec: Reconciler, fake: FakeSupervisor
) -> None:
    await rec.apply(Desired(1, [spec()]))
    fake.groups["bot-b1"].state = "EXITED"
    await rec.apply(Desired(2, [spec()]))
    assert fake.started == ["bot-b1"] and fake.state("b1") == "EXITED"
    await rec.apply(Desired(3, [spec(nonce=1)]))
    assert fake.started == ["bot-b1", "bot-b1"] and fake.state("b1") == "RUNNING"


async def test_a_changed_program_is_reloaded_and_restarted(
    rec: Reconciler, fake: FakeSupervisor
) -> None:
    await rec.apply(Desired(1, [spec()]))
    await rec.apply(Desired(2, [spec(command=["/bin/false", "--config", "config.json"])]))
    assert fake.stopped == ["bot-b1"]
    assert fake.started == ["bot-b1", "bot-b1"]
    assert shlex.split(fake.groups["bot-b1"].config["command"])[0] == "/bin/false"


async def test_changed_files_are_rewritten(rec: Reconciler, pool_dir: Path) -> None:
    await rec.apply(Desired(1, [spec()]))
    files = {"config.json": b"{}", "user_data/strategies/Sample.py": b"v2"}
    await rec.apply(Desired(2, [spec(files=files)]))
    bot_dir = pool_dir / "bots" / "b1"
    assert (bot_dir / "config.json").read_bytes() == b"{}"
    assert (bot_dir / "user_data/strategies/Sample.py").read_bytes() == b"v2"
    assert mode(bot_dir / "config.json") == 0o600


async def test_run_applies_only_the_newest_of_queued_states(
    rec: Reconciler, fake: FakeSupervisor
) -> None:
    rec.submit(Desired(1, [spec("b1", 9000)]))
    rec.submit(Desired(2, [spec("b2", 9001)]))
    task = asyncio.create_task(rec.run())
    try:
        for _ in range(200):
            if rec.applied_gen == 2:
                break
            await asyncio.sleep(0.01)
        assert rec.applied_gen == 2
        assert fake.started == ["bot-b2"]
    finally:
        task.cancel()


def test_resolve_command_keeps_paths_and_finds_venv_programs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert resolve_command(["/bin/true", "x"]) == ["/bin/true", "x"]
    assert resolve_command(["./relative", "x"]) == ["./relative", "x"]
    assert resolve_command(["no-such-program-xyz"]) == ["no-such-program-xyz"]
    monkeypatch.setenv("PATH", "")
    found = resolve_command([Path(sys.executable).name, "-V"])
    assert os.path.dirname(found[0]) == str(Path(sys.executable).parent)
    assert found[1:] == ["-V"]


def python_spec(bot_id: str, port: int, **over: Any) -> BotSpec:
    """A bot whose command runs a Python script: one the preloader can fork."""
    return spec(bot_id, port, command=[sys.executable, "/opt/bot.py", "--config", "c.json"], **over)


@pytest.fixture
def prec(fake: FakeSupervisor, pool_dir: Path) -> Reconciler:
    # No preloader process runs here to wait for.
    options = ProgramOptions(log_dir=pool_dir / "logs", run_dir=pool_dir / "run", preloader_wait=0)
    return Reconciler(fake, pool_dir, options)  # type: ignore[arg-type]


def launched_by_launcher(fake: FakeSupervisor, bot_id: str) -> bool:
    return "launcher.py" in fake.groups[f"bot-{bot_id}"].config["command"]


async def test_launch_mode_decides_preloader_and_launchers(
    prec: Reconciler, fake: FakeSupervisor
) -> None:
    bots = [python_spec("b1", 9000), python_spec("b2", 9001)]
    await prec.apply(Desired(gen=1, bots=bots, launch="preload"))
    assert set(fake.groups) == {"bot-b1", "bot-b2", "preloader"}
    assert launched_by_launcher(fake, "b1") and launched_by_launcher(fake, "b2")

    # Switching to exec: the bots are stopped as changed programs before the preloader
    # goes (so none crashes on its way), then started plainly.
    fake.stopped.clear()
    await prec.apply(Desired(gen=2, bots=bots, launch="exec"))
    assert set(fake.groups) == {"bot-b1", "bot-b2"}
    assert fake.stopped[-1] == "preloader" and set(fake.stopped[:-1]) == {"bot-b1", "bot-b2"}
    assert not launched_by_launcher(fake, "b1") and fake.state("b1") == "RUNNING"

    await prec.apply(Desired(gen=3, bots=bots, launch="preload"))
    assert "preloader" in fake.groups and launched_by_launcher(fake, "b2")
    assert fake.state("b2") == "RUNNING"


async def test_a_command_that_is_not_python_is_never_preloaded(
    prec: Reconciler, fake: FakeSupervisor
) -> None:
    await prec.apply(Desired(gen=1, bots=[spec("b1", 9000)], launch="preload"))
    assert set(fake.groups) == {"bot-b1"} and not launched_by_launcher(fake, "b1")


async def test_a_preloader_nonce_bump_restarts_it_once_with_its_bots(
    prec: Reconciler, fake: FakeSupervisor, pool_dir: Path
) -> None:
    bots = [python_spec("b1", 9000), python_spec("b2", 9001, run="stopped")]
    await prec.apply(Desired(gen=1, bots=bots, preloader_nonce=4))
    first_pid = fake.groups["preloader"].pid
    fake.started.clear()
    await prec.apply(Desired(gen=2, bots=bots, preloader_nonce=4))
    assert fake.started == []  # a first-seen nonce is not a restart

    fake.stopped.clear()
    await prec.apply(Desired(gen=3, bots=bots, preloader_nonce=5))
    # The running bot stops before the preloader, then both start; the stopped bot stays.
    assert fake.stopped == ["bot-b1", "preloader"]
    assert fake.started == ["preloader", "bot-b1"]
    assert fake.groups["preloader"].pid != first_pid
    assert (fake.state("b1"), fake.state("b2")) == ("RUNNING", "STOPPED")

    # An agent restarted later does not repeat it.
    again = Reconciler(fake, pool_dir, prec.options)  # type: ignore[arg-type]
    fake.started.clear()
    await again.apply(Desired(gen=4, bots=bots, preloader_nonce=5))
    assert fake.started == []


async def test_a_preloader_restart_in_an_exec_pool_does_nothing(
    prec: Reconciler, fake: FakeSupervisor
) -> None:
    bots = [python_spec("b1", 9000)]
    await prec.apply(Desired(gen=1, bots=bots, launch="exec"))
    fake.stopped.clear()
    await prec.apply(Desired(gen=2, bots=bots, launch="exec", preloader_nonce=1))
    assert fake.stopped == [] and fake.state("b1") == "RUNNING"


async def test_a_bot_being_restored_is_not_started_until_the_restore_ends(
    rec: Reconciler, fake: FakeSupervisor
) -> None:
    """A restore outlives its request when the controller goes away: the controller's
    release that follows must not start the bot on a database being replaced; the end of
    the restore applies the newest desired state again."""
    task = asyncio.create_task(rec.run())

    async def applied(gen: int) -> None:
        for _ in range(200):
            if rec.applied_gen == gen and rec._latest is None:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"gen {gen} not applied")

    try:
        rec.submit(Desired(1, [spec("b1", 9000)]))
        await applied(1)
        assert not rec.begin_restore("b1")  # running, not held: refused
        rec.submit(Desired(2, [spec("b1", 9000, run="held")]))
        await applied(2)
        assert rec.begin_restore("b1")
        assert rec.begin_restore("b1")  # two overlap (a transfer given up, and its retry)
        rec.submit(Desired(3, [spec("b1", 9000)]))  # released while restoring
        await applied(3)
        assert fake.state("b1") != "RUNNING" and fake.started.count("bot-b1") == 1
        rec.end_restore("b1")  # the first ends: the second still replaces its files
        rec.submit(Desired(4, [spec("b1", 9000)]))
        await applied(4)
        assert fake.state("b1") != "RUNNING" and fake.started.count("bot-b1") == 1
        rec.end_restore("b1")
        for _ in range(200):
            if fake.state("b1") == "RUNNING":
                break
            await asyncio.sleep(0.01)
        assert fake.state("b1") == "RUNNING" and fake.started.count("bot-b1") == 2
    finally:
        task.cancel()


async def test_each_bot_gets_its_cgroup_with_its_limits_before_it_starts(
    fake: FakeSupervisor, pool_dir: Path, tmp_path: Path
) -> None:
    from agent.cgroups import CgroupV1

    parents = [tmp_path / "cgroup" / h / "c1" for h in ("memory", "cpu")]
    for p in parents:
        p.mkdir(parents=True)
    cgroups = CgroupV1(parents)
    rec = make_reconciler(fake, pool_dir, cgroups=cgroups)
    memory, cpu = cgroups.join_dirs("b1")
    started_with: list[bool] = []
    start = fake.start

    async def starting(name: str) -> None:  # its group exists when it starts
        started_with.append(memory.is_dir() and cpu.is_dir())
        await start(name)

    fake.start = starting  # type: ignore[method-assign]
    memory.mkdir()
    (memory / "memory.limit_in_bytes").write_text("")  # as the kernel makes it
    await rec.apply(Desired(1, [spec("b1", memory=256 << 20, cpu=0.5), spec("b2", 9001)]))
    assert started_with == [True, True]
    assert (memory / "memory.limit_in_bytes").read_text() == str(256 << 20)
    assert all(d.is_dir() for d in cgroups.join_dirs("b2"))
    await rec.apply(Desired(2, [spec("b1", memory=256 << 20, cpu=0.5)]))
    assert not any(d.exists() for d in cgroups.join_dirs("b2"))  # gone with its bot


async def test_each_bot_gets_its_own_cpu_quota_and_without_cgroups_it_is_said_once(
    fake: FakeSupervisor, pool_dir: Path, tmp_path: Path
) -> None:
    from structlog.testing import capture_logs

    from agent.cgroups import CgroupV1

    parent = tmp_path / "cgroup" / "cpu" / "c1"
    parent.mkdir(parents=True)
    cgroups = CgroupV1([parent])
    rec = make_reconciler(fake, pool_dir, cgroups=cgroups)
    for bot in ("b1", "b2"):  # as the kernel makes a group: its files there
        [group] = cgroups.join_dirs(bot)
        group.mkdir()
        (group / "cpu.cfs_quota_us").write_text("-1")
    await rec.apply(Desired(1, [spec("b1", cpu=0.25), spec("b2", 9001, cpu=1.5)]))
    quotas = [(d / "cpu.cfs_quota_us").read_text() for b in ("b1", "b2")
              for d in cgroups.join_dirs(b)]  # fmt: skip
    assert quotas == ["25000", "150000"]
    # A pool without cgroups cannot cap a bot's CPU: said once per bot, the busy rule left.
    plain = make_reconciler(fake, pool_dir)
    with capture_logs() as logs:
        await plain.apply(Desired(1, [spec("b1", cpu=0.25), spec("b2", 9001)]))
        await plain.apply(Desired(2, [spec("b1", cpu=0.25), spec("b2", 9001)]))
    said = [e for e in logs if e["event"] == "bot_cpu_limit_not_enforced"]
    assert [(e["bot"], e["cpu"]) for e in said] == [("b1", 0.25)]
    assert "busy rule" in said[0]["fallback"]
