"""A multi-node Docker Swarm for tests: one extra `dockerd` per network namespace.

    with swarm_nodes(count=2) as swarm:       # node 1 manager, the others workers
        swarm.host_address                    # 10.231.0.1: the host on the nodes' link
        swarm.manager.docker_host             # DOCKER_HOST for a controller on the host
        node = swarm.nodes[1]                 # SwarmNode: name, address, node_id, client
        node.bot_processes()                  # bot id -> pids of its bot processes
        node.processes("freqtrade")           # pids of its containers' matching processes
        swarm.cut(node); swarm.mend(node)     # its link down (a partition) and up again

The network: a switch namespace (ftpsw-sw) holds a bridge; the host (10.231.0.1) and each
node namespace ftpsw-n<i> (10.231.0.1<i>) have a veth on it, so the host reaches every
node (controller, tests) and tasks reach the host (agents, the exchange emulator) through
their node's docker_gwbridge. A bridge in its own namespace keeps the host's iptables
(Docker's FORWARD policy DROP) out of node-to-node traffic. Each dockerd runs under
`nsenter --net` (not `ip netns exec`, which remounts /sys: "Devices cgroup isn't mounted"),
with its own hostname (a UTS namespace: ftpsw-n<i>, its name in the swarm), data root,
exec root, pidfile and socket under BASE, and the cgroup parent /ftpsw-n<i> for its
containers (so a node's processes can be counted, and killed).

The images are saved once per process (a tar under BASE) and loaded into every node.
`clean()` (run before and after) kills whatever an earlier run left (processes in the
namespaces and cgroups), unmounts and deletes BASE, the namespaces and the host's veth,
so the host ends as it started even after a failure or an interrupted run. Needs root,
iproute2 and util-linux (nsenter). Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors

from tests.support import is_bot

PREFIX = "ftpsw"
SWITCH = f"{PREFIX}-sw"
HOST_LINK = f"{PREFIX}-h"
SUBNET = "10.231.0"
HOST_ADDRESS = f"{SUBNET}.1"
BASE = Path(tempfile.gettempdir()) / "ftpool-swarm-nodes"
CGROUPS = Path("/sys/fs/cgroup")
# FTPOOL_TEST_POOL_IMAGE: a pool image of one's own (a branch's agent on top of the
# shared image, say), without replacing freqtrade-pool:latest for everyone else.
POOL_IMAGE = os.environ.get("FTPOOL_TEST_POOL_IMAGE", "freqtrade-pool:latest")
BOTS_DIR = Path("/pool/bots")  # as the host sees a pool's bots' cwd
START_TIMEOUT = 60.0  # seconds for a dockerd to answer, or a node to be ready
STOP_TIMEOUT = 20.0  # seconds for a dockerd to end on SIGTERM before SIGKILL
timings: dict[str, float] = {}  # what the harness measured (seconds), for the docs


def run(*args: str, timeout: float = 60) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


@dataclass
class SwarmNode:
    index: int  # 1, 2, ...
    name: str  # its namespace, /run/netns/<name>; also its cgroup parent
    address: str  # its address on the link, its swarm --advertise-addr
    dir: Path
    process: subprocess.Popen | None = None
    client: docker.DockerClient = field(default=None)  # type: ignore[assignment]
    node_id: str = ""

    @property
    def docker_host(self) -> str:
        return f"unix://{self.dir}/docker.sock"

    @property
    def link(self) -> str:
        return f"sw-n{self.index}"  # its veth's end on the switch

    def bot_processes(self) -> dict[str, list[int]]:
        """Bot id → pids of the bot processes running on this node (tests.support.is_bot:
        `freqtrade trade` or a preloader's fork, each in its directory /pool/bots/<id>)."""
        found: dict[str, list[int]] = {}
        for pid in cgroup_pids(self.name):
            with contextlib.suppress(OSError):
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
                bot = is_bot(cmd.strip(), "freqtrade trade") and cwd.parent == BOTS_DIR
                if bot and b"Z" not in status_of(pid):
                    found.setdefault(cwd.name, []).append(pid)
        return found

    def processes(self, pattern: str) -> list[int]:
        """The pids of processes in this node's containers whose command line has
        `pattern` (live ones; a container's processes are in its cgroup parent)."""
        found = []
        for pid in cgroup_pids(self.name):
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                if pattern.encode() in cmdline and b"Z" not in status_of(pid):
                    found.append(pid)
        return sorted(found)


@dataclass
class SwarmNodes:
    nodes: list[SwarmNode]
    host_address: str = HOST_ADDRESS

    @property
    def manager(self) -> SwarmNode:
        return self.nodes[0]

    def cut(self, node: SwarmNode) -> None:
        """A partition: the node's link down (it reaches neither the host nor the others)."""
        run("ip", "-n", SWITCH, "link", "set", "dev", node.link, "down")

    def mend(self, node: SwarmNode) -> None:
        run("ip", "-n", SWITCH, "link", "set", "dev", node.link, "up")


def status_of(pid: int) -> bytes:
    stat = Path(f"/proc/{pid}/stat").read_bytes()
    return stat[stat.rfind(b")") + 1 : stat.rfind(b")") + 4]


def cgroup_pids(name: str) -> list[int]:
    pids: set[int] = set()
    root = CGROUPS / "pids" / name
    if root.is_dir():
        for procs in root.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(p) for p in procs.read_text().split())
    return sorted(pids)


def netns_pids(name: str) -> list[int]:
    if not Path(f"/run/netns/{name}").exists():
        return []
    return [int(p) for p in run("ip", "netns", "pids", name).split()]


def kill_all(pids_of: list) -> None:
    """SIGKILL every pid the callables find, until none is left (bounded)."""
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        pids = [pid for find in pids_of for pid in find()]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    raise RuntimeError(f"processes of the swarm nodes survived SIGKILL: {pids}")


def our_namespaces() -> list[str]:
    names = run("ip", "netns", "list").split("\n")
    return [n.split()[0] for n in names if n.startswith(f"{PREFIX}-")]


def unmount_under(base: Path) -> None:
    """Unmount every mount point under `base` (a killed dockerd's overlays, netns files)."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == str(base) or point.startswith(f"{base}/"):
            points.append(point)
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, timeout=30)


def clean() -> None:
    """Leave the host as before any run: node processes ended, mounts, cgroups,
    namespaces, the host's veth and BASE gone. Safe to call any time; raises if not."""
    namespaces = our_namespaces()
    nodes = [n for n in namespaces if n != SWITCH]
    groups = [p.name for p in (CGROUPS / "pids").glob(f"{PREFIX}-*")]
    # The containers' processes first (test bots: no need to stop them gracefully), then
    # each dockerd gracefully: one ended with SIGTERM unmounts what it mounted.
    kill_all([lambda g=g: cgroup_pids(g) for g in groups])
    for name in nodes:
        for pid in netns_pids(name):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while any(netns_pids(n) for n in nodes) and time.monotonic() < deadline:
        time.sleep(0.2)
    kill_all(
        [lambda n=n: netns_pids(n) for n in nodes] + [lambda g=g: cgroup_pids(g) for g in groups]
    )
    unmount_under(BASE)
    for group in groups:
        for hierarchy in CGROUPS.iterdir():
            for directory, _, _ in os.walk(hierarchy / group, topdown=False):
                with contextlib.suppress(OSError):
                    os.rmdir(directory)
    for name in namespaces:
        run("ip", "netns", "delete", name)
    if Path(f"/sys/class/net/{HOST_LINK}").exists():
        run("ip", "link", "delete", HOST_LINK)
    shutil.rmtree(BASE, ignore_errors=True)
    left = our_namespaces() or (Path(f"/sys/class/net/{HOST_LINK}").exists() and [HOST_LINK])
    if left or BASE.exists():
        raise RuntimeError(f"swarm nodes: could not clean {left or BASE}; clean it by hand")


def make_network(count: int) -> list[SwarmNode]:
    run("ip", "netns", "add", SWITCH)
    sw = ("ip", "-n", SWITCH)
    run(*sw, "link", "add", "br0", "type", "bridge")
    run(*sw, "link", "set", "dev", "br0", "up")
    run("ip", "link", "add", HOST_LINK, "type", "veth", "peer", "name", "sw-host", "netns", SWITCH)
    run("ip", "addr", "add", f"{HOST_ADDRESS}/24", "dev", HOST_LINK)
    run("ip", "link", "set", "dev", HOST_LINK, "up")
    run(*sw, "link", "set", "dev", "sw-host", "master", "br0", "up")
    nodes = []
    for index in range(1, count + 1):
        name, address = f"{PREFIX}-n{index}", f"{SUBNET}.{10 + index}"
        run("ip", "netns", "add", name)
        ns = ("ip", "-n", name)
        node = SwarmNode(index, name, address, BASE / f"n{index}")
        run(*ns, "link", "add", "eth0", "type", "veth", "peer", "name", node.link,
            "netns", SWITCH)  # fmt: skip
        run(*sw, "link", "set", "dev", node.link, "master", "br0", "up")
        run(*ns, "addr", "add", f"{address}/24", "dev", "eth0")
        run(*ns, "link", "set", "dev", "eth0", "up")
        run(*ns, "link", "set", "dev", "lo", "up")
        # No default route: a worker pulls a task's image by tag before it falls back to
        # its own copy, and its DNS lookups must fail at once (no route), not time out.
        nodes.append(node)
    return nodes


def start_dockerd(node: SwarmNode) -> None:
    node.dir.mkdir(parents=True)
    (node.dir / "daemon.json").write_text("{}")  # not the host's /etc/docker/daemon.json
    log = open(node.dir / "dockerd.log", "wb")  # noqa: SIM115 (the daemon's lifetime)
    node.process = subprocess.Popen(
        # Its own hostname (a UTS namespace: the node's name in the swarm), its network.
        ["unshare", "--uts", "sh", "-c",
         'hostname "$0" && net="$1" && shift && exec nsenter --net="$net" dockerd "$@"',
         node.name, f"/run/netns/{node.name}",
         "--data-root", str(node.dir / "data"), "--exec-root", str(node.dir / "exec"),
         "--pidfile", str(node.dir / "docker.pid"), "--host", node.docker_host,
         "--config-file", str(node.dir / "daemon.json"),
         "--cgroup-parent", f"/{node.name}", "--log-level", "warn"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    log.close()
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        with contextlib.suppress(docker.errors.DockerException):
            node.client = docker.DockerClient(base_url=node.docker_host, timeout=120)
            node.client.ping()
            return
        if node.process.poll() is not None or time.monotonic() > deadline:
            tail = (node.dir / "dockerd.log").read_text()[-2000:]
            raise RuntimeError(f"dockerd of {node.name} did not start:\n{tail}")
        time.sleep(0.2)


def load_images(nodes: list[SwarmNode], images: tuple[str, ...]) -> None:
    archive = BASE / "images.tar"
    started = time.monotonic()
    run("docker", "save", "-o", str(archive), *images, timeout=300)
    timings["save"] = time.monotonic() - started

    def load(node: SwarmNode) -> None:
        run("docker", "-H", node.docker_host, "load", "-i", str(archive), timeout=300)

    started = time.monotonic()
    with ThreadPoolExecutor(len(nodes)) as pool:
        list(pool.map(load, nodes))
    timings["load"] = time.monotonic() - started
    archive.unlink()


def form_swarm(nodes: list[SwarmNode], heartbeat: float) -> None:
    manager, started = nodes[0], time.monotonic()
    manager.client.swarm.init(
        advertise_addr=manager.address, listen_addr=f"{manager.address}:2377",
        default_addr_pool=["10.232.0.0/16"], subnet_size=24,
        dispatcher_heartbeat_period=int(heartbeat * 1e9),
    )  # fmt: skip
    timings["init"] = time.monotonic() - started
    token = manager.client.swarm.attrs["JoinTokens"]["Worker"]
    started = time.monotonic()
    for node in nodes[1:]:
        node.client.swarm.join(
            remote_addrs=[f"{manager.address}:2377"], join_token=token,
            advertise_addr=node.address, listen_addr=f"{node.address}:2377",
        )  # fmt: skip
    for node in nodes:
        node.node_id = node.client.info()["Swarm"]["NodeID"]
    deadline = time.monotonic() + START_TIMEOUT
    while any(n.attrs["Status"]["State"] != "ready" for n in manager.client.nodes.list()):
        if time.monotonic() > deadline:
            raise RuntimeError("swarm nodes: not every node became ready")
        time.sleep(0.2)
    timings["join"] = time.monotonic() - started


@contextlib.contextmanager
def swarm_nodes(
    count: int = 2, images: tuple[str, ...] = (POOL_IMAGE,), heartbeat: float = 1.0
) -> Iterator[SwarmNodes]:
    """`count` dockerds in namespaces, in one swarm (node 1 the manager, the dispatcher
    heartbeat `heartbeat` seconds), each with `images`; everything removed afterwards."""
    clean()
    nodes: list[SwarmNode] = []
    try:
        started = time.monotonic()
        nodes = make_network(count)
        BASE.mkdir(parents=True)
        with ThreadPoolExecutor(count) as pool:
            list(pool.map(start_dockerd, nodes))
        timings["dockerds"] = time.monotonic() - started
        if images:
            load_images(nodes, images)
        form_swarm(nodes, heartbeat)
        yield SwarmNodes(nodes)
    finally:
        started = time.monotonic()
        for node in nodes:
            if node.client is not None:
                node.client.close()
        clean()
        timings["teardown"] = time.monotonic() - started
