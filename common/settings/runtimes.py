"""Where and how pools run: the `local`, `docker` and `swarm` runtimes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from common.settings.parsing import boolean, choice, integer, setting, text

# Runtimes whose pools run on several hosts: AGENT_FENCE_TIMEOUT=auto turns fencing on there.
MULTI_HOST_RUNTIMES = frozenset({"swarm"})


def pool_runtime() -> Any:
    return setting("POOL_RUNTIME", choice("local", "docker", "swarm"), "local", "how pools are run")


def swarm_network() -> Any:
    return setting(
        "SWARM_NETWORK", text, "ftpool",
        "attachable overlay network of the pools (swarm; made when missing)",
    )  # fmt: skip


def swarm_node_labels() -> Any:
    return setting(
        "SWARM_NODE_LABELS", text, "",
        "nodes that may run pools (swarm): comma-separated key=value or key (the node must "
        "have it) and !key=value or !key (it must not)",
    )  # fmt: skip


def pool_storage() -> Any:
    return setting(
        "POOL_STORAGE", choice("auto", "shared", "node"), "auto",
        "where pools' directories are (swarm): node (each node's own disk, a Docker volume; "
        "bots' files move through the agents), shared (BOT_BASE_DIR seen by every node); "
        "auto: node on swarm, shared elsewhere",
    )  # fmt: skip


def pool_image() -> Any:
    return setting("POOL_IMAGE", text, "freqtrade-pool:latest", "image of pool containers (docker)")


def pool_network() -> Any:
    return setting("POOL_NETWORK", text, "host", "host, or a user-defined bridge network (docker)")


def pool_memory_limit() -> Any:
    return setting(
        "POOL_MEMORY_LIMIT", text, "", "memory limit per pool container, e.g. 4g (docker)"
    )


def pool_oom_score_adj() -> Any:
    return setting(
        "POOL_OOM_SCORE_ADJ", integer(-1000, 1000), "0",
        "oom_score_adj of pool containers' machinery (docker; -999 where the daemon may set it)",
    )  # fmt: skip


def pool_publish_ports() -> Any:
    return setting(
        "POOL_PUBLISH_PORTS",
        boolean,
        "false",
        "publish bot ports of bridge pools (docker) or on each pool's node (swarm)",
    )


def pool_publish_ip() -> Any:
    return setting(
        "POOL_PUBLISH_IP", text, "127.0.0.1", "host address published ports bind (docker)"
    )


def pool_host_dir() -> Any:
    return setting(
        "POOL_HOST_DIR", text, "", "BOT_BASE_DIR/pools as the Docker host sees it (docker)"
    )


def agent_controller_url() -> Any:
    return setting(
        "AGENT_CONTROLLER_URL", text, "", "URL agents use to reach the controller's WebSocket"
    )


def pool_cgroups() -> Any:
    return setting(
        "POOL_CGROUPS", choice("off", "auto", "v1", "v2"), "off",
        "each bot in a cgroup of its own (docker): v1 binds the pool's --cgroup-parent "
        "/ftpool/<pool> into it, v2 gives it a delegated cgroup (Docker >= 28); auto: the "
        "daemon's version where it can be had, else off (logged why); off: none",
    )  # fmt: skip


def host_path(raw: str) -> Path:
    """A path on the Docker host: absolute as written (not made so against this one's
    working directory)."""
    if not raw.strip().startswith("/"):
        raise ValueError("must be an absolute path on the Docker host")
    return Path(raw.strip())


def pool_cgroup_root() -> Any:
    return setting(
        "POOL_CGROUP_ROOT", host_path, "/sys/fs/cgroup",
        "where the Docker host mounts its cgroup v1 hierarchies (POOL_CGROUPS=v1)",
    )  # fmt: skip


def pool_cgroup_view() -> Any:
    return setting(
        "POOL_CGROUP_VIEW", text, "",
        "where this controller sees the Docker host's cgroup v1 hierarchies, to remove a "
        "removed pool's /ftpool/<pool> groups (POOL_CGROUPS=v1); empty: POOL_CGROUP_ROOT, "
        "a controller on the Docker host",
    )  # fmt: skip
