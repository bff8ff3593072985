"""One request-weight budget per upstream origin, as pure decisions on a state and a time.

Exchanges limit request weight per address and minute (Binance: 6,000; a 429 with
Retry-After over it, a 418 ban for an address that keeps calling). Every bot of a pool, and
every pool of a host, shares the address, so the exchange's own count is the one to trust:
each answer's used-weight header (it counts the other pools too) plus, until the next
answer says more, the weight of the requests sent since.

- Public requests stop at the table's share of the limit (answered 429 here, until the
  exchange's minute turns), leaving the rest for signed requests (orders, balances).
- A 429 or a 418 from the exchange backs off the whole origin for its Retry-After: every
  request to it, public or private, is answered here meanwhile, so no bot adds to the
  count that leads to a ban. A signed request's 429 without Retry-After is the account's
  order limit, not the address's: it backs nothing off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from agent.marketdata.table import BudgetRule

MINUTE = 60.0
MAX_BACKOFF = 3 * 24 * 3600.0  # Binance bans for 2 minutes up to 3 days
BAN_WITHOUT_RETRY_AFTER = 120.0


@dataclass(frozen=True, slots=True)
class Budget:
    minute: int = -1  # the exchange minute `used` counts (wall-clock seconds // 60)
    used: int = 0  # weight used by the address in that minute, as far as we know
    backoff_until: float = 0.0  # wall-clock seconds
    backoff_status: int = 0  # 429 or 418: what is answered while backing off
    backoffs: int = 0  # back-offs started so far


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    status: int = 0  # when refused: 429 or 418
    retry_after: int = 0  # when refused: whole seconds
    reason: str = ""


ALLOWED = Verdict(True)


def _current(budget: Budget, now: float) -> Budget:
    minute = int(now // MINUTE)
    return budget if budget.minute == minute else replace(budget, minute=minute, used=0)


def decide(budget: Budget, rule: BudgetRule, now: float, weight: int, public: bool) -> Verdict:
    """Whether a request of `weight` may go upstream now."""
    if now < budget.backoff_until:
        wait = math.ceil(budget.backoff_until - now)
        return Verdict(False, budget.backoff_status, wait, "backing off")
    if public and rule.weight_limit:
        used = _current(budget, now).used
        if used + weight > rule.weight_limit * rule.public_share:
            wait = max(1, math.ceil((int(now // MINUTE) + 1) * MINUTE - now))
            return Verdict(False, 429, wait, "public share of the weight limit used")
    return ALLOWED


def charged(budget: Budget, now: float, weight: int) -> Budget:
    """The budget after sending a request of `weight`."""
    budget = _current(budget, now)
    return replace(budget, used=budget.used + weight)


def answered(
    budget: Budget, now: float, status: int, used_header: str | None, retry_after: str | None,
    signed: bool,
) -> Budget:  # fmt: skip
    """The budget after an answer: the exchange's count, and a back-off on 429 and 418."""
    budget = _current(budget, now)
    if used_header is not None and used_header.isdigit():
        budget = replace(budget, used=max(budget.used, int(used_header)))
    if status == 418 or (status == 429 and (retry_after is not None or not signed)):
        wait = _retry_after(retry_after)
        if wait is None:
            wait = BAN_WITHOUT_RETRY_AFTER if status == 418 else (budget.minute + 1) * MINUTE - now
        until = now + min(max(wait, 1.0), MAX_BACKOFF)
        ongoing = now < budget.backoff_until
        banned = status == 418 or (ongoing and budget.backoff_status == 418)
        budget = replace(
            budget, backoff_until=max(until, budget.backoff_until),
            backoff_status=418 if banned else 429, backoffs=budget.backoffs + (not ongoing),
        )  # fmt: skip
    return budget


def _retry_after(raw: str | None) -> float | None:
    """Retry-After in seconds (the exchange sends seconds; an HTTP date is not trusted)."""
    if raw is None or not raw.strip().isdigit():
        return None
    return float(raw.strip())
