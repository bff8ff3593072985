"""A removed swarm pool's volume: whether it is emptied (pure), the one-shot service that
empties it, its fixed command run for real by /bin/sh, and the runtime's removal: always of
the volume the pool's own service mounts (an earlier controller's name included)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests

from controller.runtimes.spec import POOL_MOUNT
from controller.runtimes.swarm import SwarmRuntime
from controller.runtimes.swarm_nodes import Node
from controller.runtimes.swarm_volumes import (
    KEPT,
    WIPE_SCRIPT,
    WipeResult,
    _result,
    mounted_volume,
    wipe_service_spec,
    wipe_verdict,
)
from tests.unit.controller.runtimes.test_swarm import options

VOLUME = "ftpool-pool-pool-3-mx452czf"  # pool-3's, made 2026-12-01 03:30:00.123 UTC
OLD_NAME = "ftpool-pool-pool-3"  # as a controller before pool incarnations named it


def node(state: str = "ready") -> Node:
    return Node.from_attrs({"ID": "n2", "Status": {"State": state}})


@pytest.mark.parametrize(
    ("bots", "abandoned", "on", "volume", "wipe", "reason"),
    [
        (0, False, node(), VOLUME, True, "its bots left"),
        (1, False, node(), VOLUME, False, "the pool still has 1 bot(s)"),
        (0, True, node(), VOLUME, False, "abandoned on a lost node"),
        (2, True, node("down"), VOLUME, False, "the pool still has 2 bot(s)"),
        (0, False, node("down"), VOLUME, False, "its node is down"),
        (0, False, node("disconnected"), VOLUME, False, "its node is disconnected"),
        (0, False, None, VOLUME, False, "its node is not known, or no longer in the swarm"),
        (0, False, node(), None, False, "its volume is not known"),
    ],
)
def test_a_volume_is_emptied_only_once_nothing_can_need_it(
    bots: int, abandoned: bool, on: Node | None, volume: str | None, wipe: bool, reason: str
) -> None:
    verdict = wipe_verdict(bots=bots, abandoned=abandoned, node=on, volume=volume)
    assert verdict.wipe is wipe and verdict.reason.startswith(reason)


def test_the_wipe_is_a_pinned_one_shot_task_mounting_only_the_pools_volume() -> None:
    kwargs = wipe_service_spec("pool-3", VOLUME, "n2", "freqtrade-pool:1.2")
    task = kwargs["task_template"]
    container = task["ContainerSpec"]
    assert kwargs["name"] == "ftpool-wipe-pool-3" and kwargs["labels"] == {"ftpool.wipe": "pool-3"}
    assert task["Placement"]["Constraints"] == ["node.id==n2"]
    assert task["RestartPolicy"]["Condition"] == "none"
    assert container["Image"] == "freqtrade-pool:1.2"
    assert container["Command"] == ["/bin/sh", "-c", WIPE_SCRIPT]
    assert [(m["Type"], m["Source"], m["Target"]) for m in container["Mounts"]] == [
        ("volume", VOLUME, "/pool")]  # fmt: skip
    assert container["ReadOnly"] is True and container["User"] == "0"
    assert "Networks" not in task and "docker.sock" not in str(kwargs)


def run_script(pool: Path) -> int:
    """The wipe's own command, by a real /bin/sh, on a directory standing in for /pool."""
    script = WIPE_SCRIPT.replace(POOL_MOUNT, str(pool))
    return subprocess.run(["/bin/sh", "-c", script], check=False).returncode


def test_the_command_empties_the_volume_without_following_links(tmp_path: Path) -> None:
    pool, outside = tmp_path / "pool", tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("not the pool's")
    for rel in ("archive/old-bot-20261130T000000Z/config.json", "logs/bot-x.log",
                "programs/bot-x.conf", ".transfer/x.gone/tradesv3.sqlite"):  # fmt: skip
        (pool / rel).parent.mkdir(parents=True, exist_ok=True)
        (pool / rel).write_text('{"exchange": {"secret": "s"}}')
    (pool / "bots").mkdir()  # empty: every bot left
    (pool / "archive" / "link").symlink_to(outside)
    assert run_script(pool) == 0
    assert list(pool.iterdir()) == []
    assert (outside / "keep.txt").read_text() == "not the pool's"


def test_the_command_keeps_a_volume_with_a_bot_directory_left(tmp_path: Path) -> None:
    pool = tmp_path / "pool"
    (pool / "bots" / "stuck").mkdir(parents=True)
    (pool / "bots" / "stuck" / "tradesv3.sqlite").write_text("the only copy")
    (pool / "logs").mkdir()
    assert run_script(pool) == KEPT
    assert (pool / "bots" / "stuck" / "tradesv3.sqlite").read_text() == "the only copy"
    assert (pool / "logs").is_dir()


@pytest.mark.parametrize(
    ("status", "result"),
    [
        ({"State": "complete", "ContainerStatus": {"ExitCode": 0}}, WipeResult(True, "emptied")),
        ({"State": "failed", "ContainerStatus": {"ExitCode": KEPT}},
         WipeResult(False, "bot directories are still in it")),
        ({"State": "rejected", "Err": "No such image"},
         WipeResult(False, "its task ended rejected (No such image)")),
    ],
)  # fmt: skip
def test_what_the_wipes_task_says(status: dict[str, Any], result: WipeResult) -> None:
    assert _result({"Status": status}) == result


def pool_mounts(volume: str) -> list[dict[str, Any]]:
    """A pool service's mounts as Docker reports them (its backup target, its volume)."""
    return [
        {"Type": "bind", "Source": "/srv/backups/pools/pool-3", "Target": "/backup"},
        {"Type": "volume", "Source": volume, "Target": "/pool",
         "VolumeOptions": {"Labels": {"ftpool.pool": "pool-3"}}},
    ]  # fmt: skip


def test_a_services_volume_is_the_one_it_mounts_at_pool() -> None:
    def spec(mounts: list[dict[str, Any]]) -> dict[str, Any]:
        return {"TaskTemplate": {"ContainerSpec": {"Mounts": mounts}}}

    assert mounted_volume(spec(pool_mounts(VOLUME))) == VOLUME
    assert mounted_volume(spec(pool_mounts(OLD_NAME))) == OLD_NAME
    assert mounted_volume(spec([{"Type": "bind", "Source": "/srv/pools/pool-3",
                                 "Target": "/pool"}])) is None  # fmt: skip
    assert mounted_volume(spec([])) is None and mounted_volume({}) is None


class Service:
    def __init__(self, name: str, labels: dict[str, str], volume: str = "") -> None:
        self.id, self.name = name, name
        container = {"Image": "freqtrade-pool:9"}
        if volume:
            container["Mounts"] = pool_mounts(volume)  # type: ignore[assignment]
        self.attrs = {"Spec": {
            "Name": name, "Labels": labels, "Mode": {"Replicated": {"Replicas": 1}},
            "TaskTemplate": {"ContainerSpec": container},
        }}  # fmt: skip
        self.removed = False

    def scale(self, replicas: int) -> None:
        pass

    def reload(self) -> None:
        pass

    def remove(self) -> None:
        self.removed = True


class Swarm:
    """A manager whose pool-3 runs on node n2 (in `state`) with `volume`, its task gone once
    scaled down; a wipe's task ends with `exit_code`."""

    def __init__(self, state: str = "ready", exit_code: int = 0, volume: str = VOLUME) -> None:
        labels = {"ftpool.pool": "pool-3", "ftpool.node": "n2"}
        self.pool = Service("freqtrade-pool-pool-3", labels, volume)
        self.created: list[dict[str, Any]] = []
        self.wipes: list[Service] = []
        outer = self

        class Services:
            def get(self, name: str) -> Service:
                if name != outer.pool.name or outer.pool.removed:
                    import docker.errors

                    raise docker.errors.NotFound(name)
                return outer.pool

            def list(self, filters: dict[str, str]) -> list[Service]:
                if "label" in filters:  # the pools' services
                    return [] if outer.pool.removed else [outer.pool]
                return [s for s in outer.wipes if not s.removed]

        class Nodes:
            def list(self) -> list[Any]:
                return [self.get("n2")]

            def get(self, node_id: str) -> Any:
                return type("N", (), {"attrs": {"ID": node_id, "Status": {"State": state}}})()

        class Api:
            def create_service(self, **kwargs: Any) -> dict[str, str]:
                outer.created.append(kwargs)
                outer.wipes.append(Service(kwargs["name"], kwargs["labels"]))
                return {"ID": kwargs["name"]}

            def tasks(self, filters: dict[str, str]) -> list[dict[str, Any]]:
                if filters["service"].startswith("ftpool-wipe-"):
                    return [{"Status": {"State": "complete" if exit_code == 0 else "failed",
                                        "ContainerStatus": {"ExitCode": exit_code}}}]  # fmt: skip
                return []  # the pool's task: gone

        self.services, self.nodes, self.api = Services(), Nodes(), Api()


def wiped_volumes(swarm: Swarm) -> list[str]:
    return [
        m["Source"] for w in swarm.created for m in w["task_template"]["ContainerSpec"]["Mounts"]
    ]


@pytest.mark.parametrize("volume", [VOLUME, OLD_NAME])
async def test_removing_a_pool_on_node_storage_empties_its_volume_on_its_node(
    tmp_path: Path, volume: str
) -> None:
    """The volume its service mounts, whatever its name: a pool an earlier controller made
    (`ftpool-pool-<poolId>`), adopted by this one, has its own volume emptied too."""
    swarm = Swarm(volume=volume)
    runtime = SwarmRuntime(options(tmp_path, node_storage=True), client=swarm)  # type: ignore[arg-type]
    await runtime.remove("pool-3")
    assert swarm.pool.removed  # its own service first (its task confirmed gone)
    [wipe] = swarm.created
    assert wipe["task_template"]["Placement"]["Constraints"] == ["node.id==n2"]
    assert wipe["task_template"]["ContainerSpec"]["Image"] == "freqtrade-pool:9"  # the pool's
    assert wiped_volumes(swarm) == [volume]
    assert all(s.removed for s in swarm.wipes)  # the one-shot service is gone too


async def test_a_pool_whose_service_went_empties_the_volume_it_was_seen_with(
    tmp_path: Path,
) -> None:
    """Its service gone before the removal (removed by hand): the volume this runtime saw it
    mount; a runtime that never saw it (a restarted controller) guesses none."""
    swarm = Swarm()
    seen = SwarmRuntime(options(tmp_path, node_storage=True), client=swarm)  # type: ignore[arg-type]
    assert await seen.list() == ["pool-3"]
    swarm.pool.removed = True
    fresh = SwarmRuntime(options(tmp_path, node_storage=True), client=swarm)  # type: ignore[arg-type]
    await fresh.remove("pool-3")
    assert swarm.created == []
    await seen.remove("pool-3")
    assert wiped_volumes(swarm) == [VOLUME]


@pytest.mark.parametrize(
    ("swarm", "kwargs"),
    [
        (Swarm(), {"abandoned": True}),
        (Swarm(), {"bots": 1}),
        (Swarm(state="down"), {}),
    ],
)
async def test_a_volume_that_may_be_needed_is_never_touched(
    tmp_path: Path, swarm: Swarm, kwargs: dict[str, Any]
) -> None:
    runtime = SwarmRuntime(options(tmp_path, node_storage=True), client=swarm)  # type: ignore[arg-type]
    await runtime.remove("pool-3", **kwargs)
    assert swarm.created == []


async def test_a_wipe_that_fails_never_fails_the_pools_removal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    swarm = Swarm()

    def daemon_away(**_: Any) -> dict[str, str]:
        raise requests.exceptions.ConnectionError("Connection aborted.")

    monkeypatch.setattr(swarm.api, "create_service", daemon_away)
    runtime = SwarmRuntime(options(tmp_path, node_storage=True), client=swarm)  # type: ignore[arg-type]
    await runtime.remove("pool-3")  # logged: its volume kept
    assert swarm.pool.removed


async def test_a_wipe_that_finds_a_bot_directory_keeps_the_volume(tmp_path: Path) -> None:
    swarm = Swarm(exit_code=KEPT)
    runtime = SwarmRuntime(options(tmp_path, node_storage=True), client=swarm)  # type: ignore[arg-type]
    await runtime.remove("pool-3")  # logged, not raised: the pool is removed either way
    assert swarm.pool.removed and all(s.removed for s in swarm.wipes)
