"""The budget of one upstream origin: pure decisions on a state and a time."""

from __future__ import annotations

from agent.marketdata.budget import Budget, answered, charged, decide
from agent.marketdata.table import BudgetRule

RULE = BudgetRule(weight_limit=6000, public_share=0.9, used_weight_header="X", error_code=-1003)
T0 = 1_795_000_040.0  # 20 s into a minute


def test_public_requests_stop_at_their_share_until_the_minute_turns():
    budget = answered(Budget(), T0, 200, "5398", None, signed=False)
    assert decide(budget, RULE, T0, 2, public=True).allowed
    budget = charged(budget, T0, 2)
    refused = decide(budget, RULE, T0, 2, public=True)
    assert (refused.allowed, refused.status, refused.retry_after) == (False, 429, 40)
    # Signed requests (orders, balances) may use the rest.
    assert decide(budget, RULE, T0, 0, public=False).allowed
    # The exchange's minute turned: its count starts again.
    assert decide(budget, RULE, T0 + 40, 2, public=True).allowed


def test_the_exchange_count_wins_over_a_lower_estimate_but_not_a_higher():
    budget = charged(Budget(), T0, 100)
    assert answered(budget, T0, 200, "3000", None, signed=False).used == 3000
    assert answered(budget, T0, 200, "20", None, signed=False).used == 100
    assert answered(budget, T0, 200, "junk", None, signed=False).used == 100


def test_a_429_backs_off_everything_for_its_retry_after():
    budget = answered(Budget(), T0, 429, "6001", "7", signed=False)
    assert budget.backoffs == 1
    for public in (True, False):
        verdict = decide(budget, RULE, T0 + 1, 0, public=public)
        assert (verdict.allowed, verdict.status, verdict.retry_after) == (False, 429, 6)
    assert decide(budget, RULE, T0 + 7, 0, public=False).allowed


def test_a_429_without_retry_after_waits_for_the_next_minute():
    budget = answered(Budget(), T0, 429, None, None, signed=False)
    assert budget.backoff_until == T0 + 40


def test_a_signed_429_without_retry_after_is_the_accounts_order_limit():
    budget = answered(Budget(), T0, 429, "10", None, signed=True)
    assert budget.backoffs == 0 and decide(budget, RULE, T0, 0, public=False).allowed


def test_a_418_is_a_ban_and_stays_one():
    budget = answered(Budget(), T0, 418, None, "120", signed=False)
    assert decide(budget, RULE, T0 + 60, 0, public=True).status == 418
    # A 429 that comes back meanwhile (a request in flight) does not make it lighter.
    budget = answered(budget, T0 + 1, 429, None, "1", signed=False)
    assert budget.backoffs == 1 and budget.backoff_status == 418
    assert budget.backoff_until == T0 + 120
    assert decide(budget, RULE, T0 + 120, 0, public=True).allowed


def test_a_418_without_retry_after_still_backs_off():
    assert answered(Budget(), T0, 418, None, "soon", signed=False).backoff_until == T0 + 120


def test_no_limit_means_only_back_offs():
    rule = BudgetRule(weight_limit=0, public_share=1.0, used_weight_header="", error_code=0)
    assert decide(charged(Budget(), T0, 10**9), rule, T0, 10, public=True).allowed
