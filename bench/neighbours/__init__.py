"""Noisy neighbours: ten real trading bots in one pool, one of them misbehaving, and what
the other nine's users see, with the pool's limits off and on.

    .venv/bin/python -m bench.neighbours [--cases leak,spin] [--limits off,on]
        [--quiet 20 --acting 40 --after 40] [--rate 20] [--pairs 3] [--memory-limit 512m]
        [--cpu-limit 0.5] [--limits off,on,cgroup --runtime docker]
        [--busy-cpu 90 --busy-window 30000 --busy-policy idle] [--runtime local|docker]

For each case and each setting of the limits, a controller (local runtime, real
supervisord, preloaded `freqtrade trade --dry-run` bots; or `--runtime docker`: a pool
container of `make images`' pool image, its cpuset pinned instead) runs ten bots in one
pool, trading
against the exchange emulator: nine DemoStrategy bots and one NoisyStrategy bot
(bench/neighbours/strategy.py), calm until cued. Once every bot answers, the pool
(supervisord, the agent, the preloader and every bot) is pinned to core 0; the controller,
the exchange emulator and the prober run on core 1.

Each run has three phases: `quiet` (all calm), then the cue (`leak`, `spin` or
`spin-thread`), `acting` (while the limits take effect: the memory grace, the CPU window)
and `after`. Throughout, a prober sends `--rate` requests a second through the
controller's proxy to the calm bots' `/api/v1/ping` and `/api/v1/status`, and the calm
bots' agent-reported ping is read from `GET /api/bots` each second. Printed: each phase's
p50/p99/max of each, limits off and on side by side, and what befell the noisy bot.

Limits off: `BOT_BUSY_CPU=0`, no memory limit. On: the defaults (`BOT_BUSY_CPU=90`,
`BOT_BUSY_WINDOW=30000`, `BOT_BUSY_POLICY=idle`, or the flags; `BOT_MEMORY_GRACE=30000`) and
`BOT_MEMORY_LIMIT=--memory-limit` (a local pool has no pool limit to derive one from).
`cgroup` (Docker only, a cgroup v1 host): as on, and each bot in a cgroup of its own
(`POOL_CGROUPS=v1`), its memory limit and `BOT_CPU_LIMIT=--cpu-limit` the kernel's.
The leak is bounded (1.5 GiB), every run by its phases. Uses loopback ports 31500-31999
(bots, market-data proxy).
"""
