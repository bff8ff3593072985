"""Applying the controller's desired state to supervisord, idempotently.

Applying the same Desired twice changes nothing; a running bot whose spec did
not change is never restarted; a restart happens only when the controller bumps
the bot's restart nonce. Applied nonces are kept on disk so an agent restart
does not repeat a restart.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import structlog

from agent.cgroups import BotGroups
from agent.helper_ready import proxy_holds_port, wait_for_market_data, wait_for_preloader
from agent.marketdata.holder import ProxyPort
from agent.pool_files import PoolFiles, write_if_changed
from agent.programs import MARKET_DATA, PRELOADER, ProgramOptions, bot_id_of, program_name
from agent.removed_bots import archive_removed
from agent.supervisor import ProcessInfo, SupervisorClient
from common.protocol import BotSpec, Desired
from common.states import ACTIVE, SETTLED, ProcessState, RunState

log = structlog.get_logger("agent.reconcile")
_STOP_TIMEOUT = 120.0


class Reconciler:
    def __init__(
        self,
        supervisor: SupervisorClient,
        pool_dir: Path,
        options: ProgramOptions,
        on_change: Callable[[], None] = lambda: None,
        cgroups: BotGroups | None = None,
    ) -> None:
        self.supervisor = supervisor
        self.cgroups = cgroups  # each bot's own cgroup, made before it starts (None: none)
        self._cpu_unenforced: set[str] = set()  # bots whose CPU limit was said to be no cap
        self.bots_dir = pool_dir / "bots"
        self.programs_dir = pool_dir / "programs"
        self.archive_dir = pool_dir / "archive"
        self.state_file = pool_dir / "agent-state.json"
        self.options = options
        self.files = PoolFiles(pool_dir, options)
        self.applied_gen = 0
        self._on_change = on_change
        # Applied restart nonces of the bots and of the preloader (None: none seen yet),
        # whether the pool's market-data proxy was last on (None: not known yet), and the
        # bots whose process started with its config through the proxy (kept, as it runs on
        # while the agent restarts; the controller moves them off a taken port).
        self._nonces, self._preloader_nonce, self._market_data_on, self.routed_bots = (
            self._load_nonces()
        )
        self._latest: Desired | None = None
        self._wakeup = asyncio.Event()
        # Fenced (agent/fence.py): no desired state is applied until a new one is submitted.
        self._fenced = False
        self._lock = asyncio.Lock()  # one apply or fence at a time
        self._applying: asyncio.Task[None] | None = None  # the apply under way: a fence ends it
        # Who holds the market-data proxy's port, and whether the bots' configs written
        # last name the proxy (None: none written yet).
        md = options.market_data
        self.proxy_port = ProxyPort(md.port) if md is not None else None
        self._routed: bool | None = None
        self._applied: Desired | None = None
        self._taken: Desired | None = None  # the desired state the loop took last
        self.submitted = 0  # desired states submitted so far (a fence asked before one is moot)
        # Bots whose database a restore is replacing: never started meanwhile, whatever the
        # desired state says (a restore outlives its request if the controller goes away).
        # Counted: two may overlap (a transfer the controller gave up on, and its retry).
        self._restoring: Counter[str] = Counter()

    def _load_nonces(self) -> tuple[dict[str, int], int | None, bool | None, set[str]]:
        try:
            raw = json.loads(self.state_file.read_text())
            nonces = {str(k): int(v) for k, v in raw.get("nonces", {}).items()}
            preloader = raw.get("preloader")
            market_data = raw.get("market_data")
            routed = {str(b) for b in raw.get("routed", [])}
            return (nonces, None if preloader is None else int(preloader),
                    market_data if isinstance(market_data, bool) else None, routed)  # fmt: skip
        except FileNotFoundError:
            return {}, None, None, set()
        except (ValueError, AttributeError, TypeError):
            log.warning("agent_state_unreadable", path=str(self.state_file))
            return {}, None, None, set()

    def _save_nonces(self) -> None:
        state = {"nonces": self._nonces, "preloader": self._preloader_nonce,
                 "market_data": self._market_data_on,
                 "routed": sorted(self.routed_bots)}  # fmt: skip
        write_if_changed(self.state_file, json.dumps(state).encode(), 0o600)

    def submit(self, desired: Desired) -> None:
        """Queue a desired state; only the newest one is applied if several arrive at once.
        A new desired state from the controller ends a fence."""
        self._fenced = False
        self.submitted += 1
        self._latest = desired
        self._wakeup.set()

    async def run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            desired, self._latest = self._latest, None
            if desired is None:
                continue
            self._taken = desired  # the newest the controller sent: what a reroute repeats
            try:
                async with self._lock:
                    if not self._fenced:  # else the controller's next word is awaited
                        await self._apply_preemptible(desired)
            except Exception:
                # Keep the desired state: the next submit or retry converges from here.
                log.exception("reconcile_failed", gen=desired.gen)
                if self._latest is None:
                    self._latest = desired
                await asyncio.sleep(2)
                self._wakeup.set()

    async def _apply_preemptible(self, desired: Desired) -> None:
        """Apply `desired` in a task of its own, which a fence cancels: stopping the bots
        must not wait for an apply (a preloader's start, bots stopping one by one)."""
        applying = self._applying = asyncio.ensure_future(self.apply(desired))
        try:
            await asyncio.wait((applying,))
        finally:
            self._applying = None
            if not applying.done():  # this loop itself is being cancelled
                applying.cancel()
        if applying.cancelled():
            log.warning("apply_preempted", gen=desired.gen)
        else:
            applying.result()

    async def apply(self, desired: Desired) -> None:
        for d in (self.programs_dir, self.archive_dir, self.options.log_dir):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Bot users must pass through bots/ to reach their own directory, and no further.
        self.bots_dir.mkdir(parents=True, exist_ok=True, mode=0o711)
        os.chmod(self.bots_dir, 0o711)
        wanted = {spec.id: spec for spec in desired.bots}
        # Without a run directory there is no place for a preloader's socket: plain exec.
        preload = desired.launch == "preload" and self.options.run_dir is not None
        proxy = desired.market_data
        route = proxy and await proxy_holds_port(self.supervisor, self.proxy_port)
        await asyncio.to_thread(self.files.write, desired.bots, preload, route, proxy)
        if self.cgroups is not None:
            await asyncio.to_thread(self._cgroups, desired.bots)
        else:
            self._cpu_limits_unenforced(desired.bots)
        added, changed, removed = await self.supervisor.reload_config()
        # A removed preloader goes last: its bots die with it, and they should stop in
        # order (as changed programs) rather than crash and be restarted meanwhile.
        for name in removed:
            if name != PRELOADER:
                await self._unload(name)
        for name in changed:
            await self._unload(name)
            await self.supervisor.add_group(name)
        if PRELOADER in removed:
            await self._unload(PRELOADER)
        for name in added:
            await self.supervisor.add_group(name)
        if added or changed or removed:
            log.info("programs_updated", added=added, changed=changed, removed=removed)

        if self._preloader_nonce is None:
            self._preloader_nonce = desired.preloader_nonce  # first seen: not a restart
        if desired.preloader_nonce > self._preloader_nonce and preload:
            await self._restart_preloader()
            await wait_for_preloader(self.options)
        elif PRELOADER in added or PRELOADER in changed:
            await wait_for_preloader(self.options)
        if MARKET_DATA in added or MARKET_DATA in changed:
            ready = await wait_for_market_data(self.supervisor, self.proxy_port)
            if ready != route:
                # Bots start through the proxy only once it holds its port, and directly
                # while it cannot.
                route = ready
                await asyncio.to_thread(self.files.write, desired.bots, preload, route, proxy)
        self._routed = route
        switched = self._market_data_on is not None and proxy != self._market_data_on
        if switched and self.options.market_data is not None:  # a pool without one: no change
            await self._restart_for_market_data(proxy)
        self._market_data_on = proxy
        self._preloader_nonce = desired.preloader_nonce
        processes = await self.supervisor.all_processes()
        await archive_removed(self.bots_dir, self.archive_dir, self.options.log_dir, wanted,
                              set(desired.purge), processes)  # fmt: skip
        if self.cgroups is not None:
            await asyncio.to_thread(self._remove_cgroups, set(wanted))
        for spec in desired.bots:
            if spec.run != RunState.HELD and spec.id not in self._restoring:
                await self._converge(spec, processes.get(program_name(spec.id)))
        self._nonces = {k: v for k, v in self._nonces.items() if k in wanted}
        self.routed_bots &= wanted.keys()
        await asyncio.to_thread(self._save_nonces)
        self.applied_gen = desired.gen
        self._applied = desired
        log.info("desired_applied", gen=desired.gen, bots=len(desired.bots), launch=desired.launch)
        self._on_change()

    def _cgroups(self, bots: list[BotSpec]) -> None:
        """Each bot's group with its limits, before any of them starts."""
        assert self.cgroups is not None
        for spec in bots:
            self.cgroups.ensure(spec.id, spec.memory, spec.cpu)

    def _cpu_limits_unenforced(self, bots: list[BotSpec]) -> None:
        """Without cgroups a bot's CPU limit cannot be a cap: said once per bot, and its
        CPU is left to the busy rule (agent/cpu.py), which deprioritises it when it spins."""
        for spec in bots:
            if spec.cpu and spec.id not in self._cpu_unenforced:
                self._cpu_unenforced.add(spec.id)
                log.warning("bot_cpu_limit_not_enforced", bot=spec.id, cpu=spec.cpu,
                            reason="no cgroups (POOL_CGROUPS off or unusable)",
                            fallback="busy rule: BOT_BUSY_CPU, BOT_BUSY_POLICY")  # fmt: skip

    def _remove_cgroups(self, wanted: set[str]) -> None:
        """The groups of bots gone from the pool, once their processes ended (one that
        still holds a process: at a later apply)."""
        assert self.cgroups is not None
        if removed := self.cgroups.remove_except(wanted):
            log.info("cgroups_removed", bots=removed)

    def apply_nothing(self) -> None:
        """Fenced: nothing is applied until the next submitted desired state; an apply
        under way is cancelled, a queued desired state dropped."""
        self._fenced, self._latest = True, None
        if self._applying is not None:
            self._applying.cancel()

    async def fence(self, since: int | None = None) -> list[str] | None:
        """Stop every bot and apply nothing more until the next submitted desired state;
        the bots it stopped. The preloader and the market-data proxy run on. None, and
        nothing stopped, if a desired state was submitted after the `since`-th: the
        controller spoke again after the fence was decided (its word wins). An apply under
        way is cancelled first (the fence does not wait for it): it is dropped, like any
        desired state queued, until the controller's next word."""
        if since is not None and self.submitted != since:
            return None
        self.apply_nothing()
        async with self._lock:
            if since is not None and self.submitted != since:
                return None
            self._fenced, self._latest = True, None
            processes = await self.supervisor.all_processes()
            bots = [n for n, i in processes.items() if bot_id_of(n) and i.state in ACTIVE]
            await asyncio.gather(*(self._stop_and_wait(name) for name in bots))
        return bots

    async def _restart_preloader(self) -> None:
        """Stop every bot, then the preloader; start it fresh. Converging starts the bots.

        Bots die with their preloader anyway; stopping them first lets each shut down
        cleanly (freqtrade closes its database) instead of being killed.
        """
        processes = await self.supervisor.all_processes()
        if PRELOADER not in processes:
            return
        bots = [n for n, i in processes.items() if bot_id_of(n) and i.state in ACTIVE]
        log.info("preloader_restart", bots=len(bots))
        await asyncio.gather(*(self._stop_and_wait(name) for name in bots))
        await self._stop_and_wait(PRELOADER)
        await self.supervisor.start(PRELOADER)

    async def _restart_for_market_data(self, on: bool) -> None:
        """The pool's proxy turned on or off: every running bot is stopped, and converging
        starts it again with its new config (a bot reads it only when it starts)."""
        processes = await self.supervisor.all_processes()
        bots = [n for n, i in processes.items() if bot_id_of(n) and i.state in ACTIVE]
        log.info("market_data_switched", on=on, bots=len(bots))
        await asyncio.gather(*(self._stop_and_wait(name) for name in bots))

    async def _converge(self, spec: BotSpec, info: ProcessInfo | None) -> None:
        name = program_name(spec.id)
        state = info.state if info else ProcessState.ABSENT
        applied = self._nonces.setdefault(spec.id, spec.nonce)
        if spec.run == RunState.STOPPED:
            self._nonces[spec.id] = spec.nonce
            if state in ACTIVE:
                log.info("bot_stop", bot=spec.id)
                await self.supervisor.stop(name)
        elif spec.nonce > applied:
            log.info("bot_restart", bot=spec.id, nonce=spec.nonce)
            await self._stop_and_wait(name)
            await self._start(spec.id)
            self._nonces[spec.id] = spec.nonce
        elif state == ProcessState.STOPPED:
            # Never started, or stopped on purpose. A bot that died (EXITED, FATAL) is left
            # alone: restarting it is the controller's policy, asked through the nonce.
            log.info("bot_start", bot=spec.id)
            await self._start(spec.id)

    async def _start(self, bot_id: str) -> None:
        """Start a bot's process; it reads its config, as written last, through the proxy
        or not: which is kept until its next start."""
        if bot_id in self.files.routed:
            self.routed_bots.add(bot_id)
        else:
            self.routed_bots.discard(bot_id)
        await self.supervisor.start(program_name(bot_id))

    def reroute(self) -> None:
        """After a check of the proxy's port: if its verdict no longer matches the bots'
        configs, write them again (the state last applied, unless a newer one is on its
        way). Running bots read theirs at their next start."""
        port, taken = self.proxy_port, self._taken
        if port is None or taken is None or self._routed == (taken.market_data and port.routed):
            return
        if self._fenced:  # nothing is applied until the controller's next word
            return
        log.info("market_data_reroute", through_proxy=port.routed)
        self._apply_taken_again()

    def _apply_taken_again(self) -> None:
        """The newest desired state the controller sent, applied again unless a newer one
        is on its way or the pool is fenced (never an older one: that would start a bot it
        has since held for a move; not submit(): that ends a fence)."""
        if self._latest is None and self._taken is not None and not self._fenced:
            self._latest = self._taken
            self._wakeup.set()

    def holds(self, bot_id: str) -> bool:
        """Whether the controller holds the bot in the newest desired state it sent."""
        spec = next((b for b in self._taken.bots if b.id == bot_id), None) if self._taken else None
        return spec is not None and spec.run == RunState.HELD

    def begin_restore(self, bot_id: str) -> bool:
        """Keep the bot from starting while its database is restored (or its directory
        moves); False (and nothing kept) unless the controller holds it in the newest
        desired state it sent. Each begin_restore is ended by one end_restore."""
        if not self.holds(bot_id):
            return False
        self._restoring[bot_id] += 1
        return True

    def end_restore(self, bot_id: str) -> None:
        """A restore is over: once none of the bot's is left, the newest desired state is
        applied again (the controller may have released the bot meanwhile), unless a newer
        one is on its way."""
        self._restoring[bot_id] -= 1
        if self._restoring[bot_id] > 0:
            return
        del self._restoring[bot_id]
        self._apply_taken_again()

    async def _unload(self, name: str) -> None:
        await self._stop_and_wait(name)
        await self.supervisor.remove_group(name)

    async def _stop_and_wait(self, name: str) -> None:
        await self.supervisor.stop(name)
        deadline = time.monotonic() + _STOP_TIMEOUT
        while time.monotonic() < deadline:
            info = (await self.supervisor.all_processes()).get(name)
            if info is None or info.state in SETTLED:
                return
            await asyncio.sleep(0.2)
        log.error("bot_stop_timeout", program=name)
