"""Runs bench/neighbours (see its package's docstring)."""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import docker

from agent.autogroup import group_nice
from bench.neighbours.figures import Phase, Stats, summarise, table
from bench.neighbours.pool import pin_pools
from bench.neighbours.probe import ProbePlan, decode, probe
from bench.neighbours.strategy import LEAK_CAP_MIB, LEAK_MIB, NAME, TRIGGER, noisy_strategy
from bench.tools import LOAD_CPU, MEASURED_CPU, pin
from common.logging import setup_logging
from tests.exchange import EmulatorProcess, trading_bot
from tests.support import (
    ADMIN_TOKEN,
    ControllerHarness,
    kill_pools,
    make_settings,
    remove_pool_containers,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[2]
POOL_IMAGE = "freqtrade-pool:latest"
NOISY = "noisy"
CALM = tuple(f"calm-{i}" for i in range(1, 10))
CASES = {
    "leak": f"keeps {LEAK_MIB} MiB more every 0.5 s (up to {LEAK_CAP_MIB} MiB)",
    "spin": "its strategy's loop spins on the CPU (main thread)",
    "spin-thread": "a thread of its strategy spins on the CPU",
}
MIB = 2**20


@dataclass
class Run:
    """What one run saw: samples per series, the noisy bot's states, its events."""

    series: dict[str, list[tuple[float, float | None]]] = field(default_factory=dict)
    noisy: list[tuple[float, dict]] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    phases: list[Phase] = field(default_factory=list)


def freqtrade() -> str:
    found = shutil.which("freqtrade", path=str(Path(sys.executable).parent))
    if found is None:
        raise SystemExit("freqtrade is not installed (the project's [e2e] extra)")
    return found


def limit_settings(mode: str, args: argparse.Namespace) -> dict[str, str]:
    """off: none; on: the agent's measurement and the scheduler's priority; cgroup: and
    each bot in a cgroup of its own (POOL_CGROUPS=v1, Docker only), its memory limit and
    BOT_CPU_LIMIT the kernel's."""
    if mode == "off":
        return {"BOT_BUSY_CPU": "0"}
    on = {"BOT_BUSY_CPU": f"{args.busy_cpu:g}", "BOT_BUSY_WINDOW": f"{args.busy_window:g}",
          "BOT_BUSY_POLICY": args.busy_policy, "BOT_MEMORY_LIMIT": args.memory_limit,
          "BOT_MEMORY_GRACE": "30000"}  # fmt: skip
    if mode == "cgroup":
        on |= {"POOL_CGROUPS": "v1", "BOT_CPU_LIMIT": f"{args.cpu_limit:g}"}
    return on


def runtime_settings(runtime: str) -> dict[str, str]:
    """The local runtime's bots are this host's processes; a Docker pool's run in a
    container of the image `make images` built, on the host's network."""
    if runtime == "local":
        return {"BOT_COMMAND": f"{freqtrade()} trade"}
    return {"POOL_RUNTIME": "docker", "POOL_IMAGE": POOL_IMAGE, "POOL_NETWORK": "host",
            "BOT_COMMAND": "freqtrade trade", "POOL_GRACE": "5000"}  # fmt: skip


def pin_pool(runtime: str, base: Path) -> None:
    """The pool on the measured core: its processes (local), its container (Docker)."""
    if runtime == "local":
        pin_pools(base, MEASURED_CPU)
        return
    client = docker.from_env()
    for c in client.containers.list(filters={"label": "ftpool.pool"}):
        if any(m.get("Source", "").startswith(str(base)) for m in c.attrs.get("Mounts", [])):
            c.update(cpuset_cpus=str(MEASURED_CPU))


def remove_pools(runtime: str, base: Path) -> None:
    if runtime == "local":
        kill_pools(base)
    else:
        remove_pool_containers(docker.from_env(), str(base))


async def all_answer(h: ControllerHarness) -> bool:
    bots = await h.bots()
    return all(
        b.get("process") and b["process"]["state"] == "RUNNING" and b["process"]["ping"]["ok"]
        for b in (bots.get(x, {}) for x in (*CALM, NOISY))
    )


async def sample(h: ControllerHarness, run: Run, until: float, local: bool) -> None:
    """Each second: the calm bots' agent-reported ping, the noisy bot's process."""
    agent = run.series.setdefault("agent", [])
    while time.time() < until:
        at = time.time()
        bots = await h.bots()
        for bot in CALM:
            ping = (bots[bot].get("process") or {}).get("ping") or {}
            agent.append((at, ping["ms"] / 1000 if ping.get("ok") and ping.get("ms") else None))
        pid = (bots[NOISY].get("process") or {}).get("pid")
        # Its autogroup's nice, read here: a local pool's bots are this host's processes (a
        # container's pids are not, and its CPU cgroup has no autogroups).
        group = group_nice(pid) if pid and local else None
        run.noisy.append((at, {**bots[NOISY], "autogroup": group}))
        await asyncio.sleep(max(0.0, at + 1 - time.time()))


async def one_run(args, exchange, strategies: Path, case: str, mode: str) -> Run:
    run = Run()
    with tempfile.TemporaryDirectory(prefix="ftpool-bench-") as tmp:
        base = Path(tmp)
        settings = make_settings(
            base, BOT_LAUNCH="preload",
            MAX_BOTS_PER_CONTAINER="10", POOL_BASE_PORT="31600", MARKET_DATA_PROXY="true",
            MARKET_DATA_BASE_PORT="31500", HEARTBEAT_INTERVAL="1000", BOT_PING_TIMEOUT="5000",
            HEALTH_CHECK_INTERVAL="30000", STRATEGIES_DIR=str(strategies), LOG_LEVEL="error",
            **limit_settings(mode, args), **runtime_settings(args.runtime),
        )  # fmt: skip
        h = await ControllerHarness(settings).start()
        try:
            for bot in (*CALM, NOISY):
                body = trading_bot(exchange.url, bot, args.pairs)
                if bot == NOISY:
                    body["strategy"] = NAME
                await h.provision(**body)
            await wait_for(lambda: all_answer(h), 600, step=2)
            # From here on: what runs now, and what the preloader forks later, inherits.
            pin_pool(args.runtime, base)
            await asyncio.sleep(args.settle)  # the bots' first candles and trades
            await measure(args, h, base, case, run)
            run.events = await noisy_events(h)
        finally:
            await h.stop()
            remove_pools(args.runtime, base)
    return run


async def measure(args, h: ControllerHarness, base: Path, case: str, run: Run) -> None:
    plan = ProbePlan(f"http://127.0.0.1:{h.settings.controller_port}", CALM, ADMIN_TOKEN,
                     args.rate)  # fmt: skip
    ctx = mp.get_context("spawn")
    ours, theirs = ctx.Pipe()
    prober = ctx.Process(target=probe, args=(plan, theirs), daemon=True)
    prober.start()
    assert await asyncio.to_thread(ours.recv) == "ready"
    start = time.time() + 1
    cue, acted = start + args.quiet, start + args.quiet + args.acting
    stop = acted + args.after
    run.phases = [Phase("quiet", start, cue), Phase("acting", cue, acted),
                  Phase("after", acted, stop)]  # fmt: skip
    ours.send((start, stop))
    sampler = asyncio.create_task(sample(h, run, stop, args.runtime == "local"))
    trigger = base / "pools" / "pool-1" / "bots" / NOISY / TRIGGER
    await asyncio.sleep(cue - time.time())
    trigger.write_text(case)
    await sampler
    trigger.unlink()
    raw = await asyncio.to_thread(ours.recv)
    prober.join(10)
    for s in decode(plan, raw):
        run.series.setdefault(s.endpoint, []).append((s.due, s.seconds))


async def noisy_events(h: ControllerHarness) -> list[dict]:
    _status, body = await h.call("GET", "/api/pool/events/history?limit=1000")
    kinds = {"bot_memory_limit", "bot_restart", "bot_failed"}
    return [e for e in body["events"] if e["instanceId"] == NOISY and e["type"] in kinds]


def noisy_story(run: Run) -> str:
    """What befell the noisy bot after its cue, from the samples and events."""
    cue = run.phases[1].start
    after = [(t - cue, b) for t, b in run.noisy if t >= cue]
    own = [b["process"].get("ownMemoryBytes") or 0 for _, b in after if b.get("process")]
    cpu = {p.name: [b["process"].get("cpuPercent") or 0 for t, b in run.noisy
                    if p.start <= t < p.end and b.get("process")] for p in run.phases}  # fmt: skip
    mean_cpu = ", ".join(f"{name} {sum(v) / len(v):.0f} %" for name, v in cpu.items() if v)
    reniced = next((t for t, b in after if (b.get("process") or {}).get("nice") == 19), None)
    events = [f"{e['type']}({(e.get('detail') or {}).get('action') or e['reason']}) at "
              f"+{datetime.fromisoformat(e['timestamp']).timestamp() - cue:.0f} s"
              for e in run.events]  # fmt: skip
    grouped = next((t for t, b in after if b.get("autogroup") == 19), None)
    renice = f"from +{reniced:.0f} s" if reniced is not None else "never"
    group = f"from +{grouped:.0f} s" if grouped is not None else "never"
    return (f"noisy bot: max own memory {max(own, default=0) / MIB:.0f} MiB, mean CPU "
            f"{mean_cpu}, nice 19 {renice}, autogroup nice 19 {group}; events: "
            f"{', '.join(events) or 'none'}")  # fmt: skip


def counts(run: Run) -> str:
    return ", ".join(f"{name} {len(v)}" for name, v in run.series.items())


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", default="leak,spin")
    parser.add_argument("--limits", default="off,on")
    parser.add_argument("--quiet", type=float, default=20)
    parser.add_argument("--acting", type=float, default=40)
    parser.add_argument("--after", type=float, default=40)
    parser.add_argument("--settle", type=float, default=10)
    parser.add_argument("--rate", type=float, default=20)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--memory-limit", default="512m")
    parser.add_argument("--cpu-limit", type=float, default=0.5,
                        help="BOT_CPU_LIMIT with limits cgroup")  # fmt: skip
    parser.add_argument("--busy-cpu", type=float, default=90, help="BOT_BUSY_CPU with limits on")
    parser.add_argument("--busy-window", type=float, default=30000,
                        help="BOT_BUSY_WINDOW (ms) with limits on")  # fmt: skip
    parser.add_argument("--busy-policy", choices=("idle", "nice"), default="idle",
                        help="BOT_BUSY_POLICY with limits on")  # fmt: skip
    parser.add_argument("--runtime", choices=("local", "docker"), default="local",
                        help="docker: a pool container of `make images`' pool image")  # fmt: skip
    args = parser.parse_args()
    cases = [c for c in args.cases.split(",") if c in CASES]
    modes = [m for m in args.limits.split(",") if m in ("off", "on", "cgroup")]
    if not cases or not modes or args.rate <= 0 or min(args.quiet, args.acting, args.after) <= 0:
        parser.error("--cases of leak,spin,spin-thread; --limits of off,on,cgroup; positive phases")
    if "cgroup" in modes and args.runtime != "docker":
        parser.error("--limits cgroup needs --runtime docker (a cgroup v1 Docker host)")
    pin(LOAD_CPU)  # the controller, the emulator and the prober: the load side
    setup_logging("error")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ftpool-bench-strategies-") as strategies:
        demo = (ROOT / "controller" / "strategies" / "DemoStrategy.py").read_text()
        (Path(strategies) / "DemoStrategy.py").write_text(demo)
        (Path(strategies) / f"{NAME}.py").write_text(noisy_strategy(demo))
        results: dict[str, dict[str, Run]] = {}
        with EmulatorProcess.start(markets=400, weight_limit=0) as exchange:
            for case in cases:
                for mode in modes:
                    run = await one_run(args, exchange, Path(strategies), case, mode)
                    results.setdefault(case, {})[mode] = run
                    print(f"[{case}, limits {mode}] {noisy_story(run)}; samples: "
                          f"{counts(run)}", flush=True)  # fmt: skip
    print(f"\nbench/neighbours: 9 calm DemoStrategy bots + 1 noisy, {args.pairs} pairs each, "
          f"{args.runtime} runtime, preloaded; pool on core {MEASURED_CPU}, controller + "
          f"emulator + prober on core {LOAD_CPU}; {args.rate:g} req/s through the proxy; "
          f"phases quiet {args.quiet:g} s, acting {args.acting:g} s, after {args.after:g} s; "
          f"limits on: BOT_BUSY_CPU {args.busy_cpu:g} over {args.busy_window:g} ms, "
          f"BOT_BUSY_POLICY {args.busy_policy}, BOT_MEMORY_LIMIT {args.memory_limit}; "
          f"cgroup: and POOL_CGROUPS=v1, BOT_CPU_LIMIT {args.cpu_limit:g}")  # fmt: skip
    for case, runs in results.items():
        print(f"\n{case}: the noisy bot {CASES[case]}")
        summaries: dict[str, dict[str, dict[str, Stats]]] = {
            mode: summarise(run.phases, run.series) for mode, run in runs.items()
        }
        print("\n".join(table(summaries)))
    print(f"\n(took {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    asyncio.run(main())
