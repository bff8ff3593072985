"""Whom the kernel kills when a pool runs out of memory: a bot, never the pool's machinery.

Each process has an `oom_score_adj` (-1000 to 1000) that the kernel adds, in thousandths of
the memory it may use, to the process's size when it chooses what to kill. The pool's
machinery (supervisord, the agent, its event listener, the preloader, the market-data proxy)
runs strongly negative; every bot positive, so the kernel picks a bot whatever the sizes.

Raising a score is always allowed; lowering one needs CAP_SYS_RESOURCE. The agent raises
each bot's; a pool container may get its machinery's from the runtime when it is made
(POOL_OOM_SCORE_ADJ, inherited by everything it starts), and where the agent may lower
scores (root on a host) it lowers the machinery's itself. The heartbeat says whether every
bot ends up above the machinery.
"""

from __future__ import annotations

from collections.abc import Iterable

# What the agent lowers the machinery to where it may: not -1000, which would make a
# leaking agent unkillable and its container hang instead.
MACHINERY_OOM_SCORE_ADJ = -999


def read_oom_score_adj(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/oom_score_adj", "rb") as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def write_oom_score_adj(pid: int, value: int) -> int | None:
    """Set it if allowed; the score the process has afterwards (None: it is gone)."""
    try:
        with open(f"/proc/{pid}/oom_score_adj", "w") as f:
            f.write(str(value))
    except OSError:
        pass
    return read_oom_score_adj(pid)


class OomScores:
    """Sets each process's score once per pid and remembers what it got."""

    def __init__(self, bot_adj: int, machinery_adj: int) -> None:
        self.bot_adj = bot_adj
        self.machinery_adj = machinery_adj
        self._machinery: dict[int, int | None] = {}
        self._bots: dict[int, int | None] = {}

    def place(self, machinery: Iterable[int], bots: Iterable[int]) -> bool | None:
        """Score new pids (0s are skipped); whether every bot now ranks above every piece
        of machinery for the kernel (None: no bot runs)."""
        self._machinery = self._score(self._machinery, machinery, self.machinery_adj)
        self._bots = self._score(self._bots, bots, self.bot_adj)
        bot_scores = [s for s in self._bots.values() if s is not None]
        if not bot_scores:
            return None
        machinery_scores = [s for s in self._machinery.values() if s is not None]
        return max(machinery_scores, default=-1000) < min(bot_scores)

    @staticmethod
    def _score(
        known: dict[int, int | None], pids: Iterable[int], value: int
    ) -> dict[int, int | None]:
        return {
            pid: known[pid] if pid in known else write_oom_score_adj(pid, value)
            for pid in pids
            if pid > 0
        }
