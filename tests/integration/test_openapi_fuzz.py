"""Property-based fuzzing of every operation in /api/openapi.json against a real controller.

Schemathesis generates requests from the description (valid and invalid ones) and sends
them, as the admin, as a user (alice, by Bearer and by basic auth) and with no credentials,
to a real controller whose pools run under real supervisord with fake bots. Every answer
must:
- not be a 500, and a 5xx at all only where the description says a bot can fail (the
  proxy's 502/503/504);
- be declared by the description (status, content type, headers) and match its schema;
  an invalid request must be refused, a secured operation must refuse bad credentials;
- never be a 2xx for a user acting on another user's bot;
- hold no secret: the admin token, the JWT secret, any bot's API password, JWT secret or
  WebSocket token, the exchange keys a bot was provisioned with.

Bounded (docs/testing.md): MAX_EXAMPLES per operation and identity (fewer for
provisioning, which starts processes), derandomized so a CI run is reproducible, no
shrinking; once the run of all identities passes BUDGET_SECONDS, the remaining operations
get MIN_EXAMPLES each, so every operation is still tried."""

from __future__ import annotations

import asyncio
import base64
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from controller.api.openapi import PATH_PARAMETERS
from tests.support import ADMIN_TOKEN, JWT_SECRET, ControllerHarness, user_token

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

BASE_PORT = 26000
MAX_EXAMPLES = 100
PROVISION_EXAMPLES = 5
MIN_EXAMPLES = 3
BUDGET_SECONDS = 180.0  # for all identities together
REQUEST_TIMEOUT = 15.0
ALICE, BOB = user_token("alice"), user_token("bob")
EXCHANGE_KEY = "fuzz-exchange-key-7f3a9c1e5b2d4068a1b3c5d7e9f10234"
EXCHANGE_SECRET = "fuzz-exchange-secret-0b9d8c7a6f5e4d3c2b1a09f8e7d6c5b4"
# A stream that never ends by itself: fuzzed elsewhere would hang (tests/integration/
# test_events.py covers it; its history twin is fuzzed here).
UNBOUNDED = {("GET", "/api/pool/events")}
PROXY_FAILURES = {502, 503, 504}
# A value for each path placeholder the description names, for the tests that call a
# path directly: alice's own objects, unless a test says otherwise.
EXAMPLES = {
    "instanceId": "alice-bot-1",
    "poolId": "pool-1",
    "node": "node-1",  # none: a single-host runtime has no nodes
    "userId": "alice",
    "tail": "ping",
    "name": "dashboard.js",
    "token": "0" * 64,  # a transfer's token no transfer has: 404
    "point": "tradesv3.dryrun.sqlite@20261201T000000.000000Z",  # no pool's token: 401
}


def concrete(path: str, **values: str) -> str:
    """`path` with every {placeholder} filled from EXAMPLES, or from `values`."""
    return path.format_map({**EXAMPLES, **values})


async def test_every_placeholder_has_an_example() -> None:
    assert set(EXAMPLES) == set(PATH_PARAMETERS)


CHECKS = [
    status_code_conformance, content_type_conformance, response_schema_conformance,
    response_headers_conformance,
    # Invalid input (by the description) is refused with a 4xx; a secured operation
    # refuses a request without or with wrong credentials.
    negative_data_rejection, ignored_auth,
]  # fmt: skip


@dataclass
class Identity:
    name: str
    authorization: str | None  # the Authorization header it sends
    own_bot: str | None  # a bot of theirs that must reach no other user
    others_bot: str | None  # a bot they must never act on

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": self.authorization} if self.authorization else {}


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


IDENTITIES = {
    "anonymous": Identity("anonymous", None, None, "bob-bot-1"),
    "alice": Identity("alice", f"Bearer {ALICE}", "alice-bot-1", "bob-bot-1"),
    # As freqtrade-client sends it: good under /bots/ only, a 401 everywhere else.
    "alice-basic": Identity("alice-basic", basic("alice", ALICE), "alice-bot-1", "bob-bot-1"),
    "admin": Identity("admin", f"Bearer {ADMIN_TOKEN}", None, None),
}


@dataclass
class Fleet:
    harness: ControllerHarness
    document: dict[str, Any]
    schema: Any
    findings: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)  # the budget's start

    def secrets(self) -> set[str]:
        found = {ADMIN_TOKEN, JWT_SECRET, EXCHANGE_KEY, EXCHANGE_SECRET}
        for bot in list(self.harness.controller.pools.registry.bots.values()):
            s = bot.secrets
            found |= {s.password, s.jwt_secret, s.ws_token}
        return found


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def fleet(module_harness_factory) -> Fleet:
    harness = await module_harness_factory(
        POOL_BASE_PORT=str(BASE_PORT), MAX_BOTS_PER_CONTAINER="10", PROXY_TIMEOUT="3000"
    )
    exchange = {"exchange": {"name": "binance", "key": EXCHANGE_KEY, "secret": EXCHANGE_SECRET}}
    await harness.provision(ALICE, instanceId="alice-bot-1", config=exchange)
    await harness.provision(BOB, instanceId="bob-bot-1", config=exchange)
    await asyncio.gather(*(harness.wait_running(b) for b in ("alice-bot-1", "bob-bot-1")))
    status, doc = await harness.call("GET", "/api/openapi.json", token=None)
    assert status == 200, doc
    schema = schemathesis.openapi.from_dict(doc)
    # Credentials are the identity's, never generated; unknown query parameters are
    # ignored by design, so adding some does not make a request invalid.
    schema.config.generation.update(with_security_parameters=False, allow_extra_parameters=False)
    return Fleet(harness, doc, schema)


def _operations(schema: Any) -> list[Any]:
    ops = [result.ok() for result in schema.get_all_operations()]
    return [o for o in ops if (o.method.upper(), o.path) not in UNBOUNDED]


def _strategy(operation: Any, targets: list[str | None]) -> Any:
    """(target, case): valid and invalid cases; one aimed at a known bot is a valid one
    (its {instanceId} replaced), so that what it tests is who may act on that bot."""
    positive = operation.as_strategy(generation_mode=GenerationMode.POSITIVE)
    try:
        either = st.one_of(positive, operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))
    except Exception:  # nothing in this operation can be made invalid
        either = positive
    return st.sampled_from(targets).flatmap(
        lambda target: st.tuples(st.just(target), positive if target else either)
    )


def _targets(operation: Any, who: Identity) -> list[str | None]:
    """Bot ids to put in {instanceId} besides generated ones: the caller's own (not for
    deleting it: the rest of the run needs it) and another user's."""
    if "{instanceId}" not in operation.path:
        return [None]
    own = [who.own_bot] if who.own_bot and operation.method.upper() != "DELETE" else []
    return [None, *own, *([who.others_bot] if who.others_bot else [])]


def check_answer(fleet: Fleet, who: Identity, case: Any, response: Any, target: str | None):
    method, path = case.operation.method.upper(), case.operation.path
    where = f"{who.name} {method} {case.formatted_path}"
    status = response.status_code
    assert status != 500, f"{where}: 500 {response.text[:300]}"
    if status >= 500:
        assert "{tail}" in path and status in PROXY_FAILURES, f"{where}: {status}"
    if target is not None and target == who.others_bot:
        # A dashboard page refuses by sending the caller to the sign-in page.
        location = response.headers.get("location") or response.headers.get("Location") or ""
        location = location[0] if isinstance(location, list) and location else location
        to_sign_in = status in (302, 303) and str(location).endswith("/ui/login")
        assert status >= 400 or to_sign_in, f"{where}: another user's bot answered {status}"
    body = response.content.decode("utf-8", "replace")
    leaked = [s[:6] + "…" for s in fleet.secrets() if s in body]
    assert not leaked, f"{where}: secrets in the answer: {leaked}"
    case.validate_response(response, checks=CHECKS)


def fuzz(fleet: Fleet, who: Identity) -> dict[str, int]:
    """Run every operation's examples for one identity; returns requests per operation."""
    session = requests.Session()
    sent: dict[str, int] = {}
    for operation in _operations(fleet.schema):
        late = time.monotonic() - fleet.started > BUDGET_SECONDS
        provisioning = operation.method.upper() == "POST" and operation.path in (
            "/api/bots", "/api/provision-enhanced",
        )  # fmt: skip
        examples = MIN_EXAMPLES if late else PROVISION_EXAMPLES if provisioning else MAX_EXAMPLES
        label = f"{operation.method.upper()} {operation.path}"
        sent[label] = fuzz_operation(fleet, who, operation, examples, session)
    return sent


def fuzz_operation(
    fleet: Fleet, who: Identity, operation: Any, examples: int, session: requests.Session
) -> int:
    """Up to `examples` requests to one operation; a finding is kept in fleet.findings."""
    sent = 0

    @settings(
        max_examples=examples, derandomize=True, database=None, deadline=None,
        phases=[Phase.explicit, Phase.generate], verbosity=Verbosity.quiet,
        suppress_health_check=list(HealthCheck),
    )  # fmt: skip
    @given(drawn=_strategy(operation, _targets(operation, who)))
    def run(drawn: tuple[str | None, Any]) -> None:
        nonlocal sent
        target, case = drawn
        if target is not None:
            case.path_parameters["instanceId"] = target
        response = case.call(
            base_url=fleet.harness.base, session=session, headers=who.headers,
            timeout=REQUEST_TIMEOUT,
        )  # fmt: skip
        sent += 1
        check_answer(fleet, who, case, response, target)

    try:
        run()
    except (Exception, BaseExceptionGroup) as exc:  # every operation is tried, all reported
        fleet.findings.append(f"{who.name} {operation.method.upper()} {operation.path}: {exc}")
    return sent


@pytest.mark.parametrize("identity", list(IDENTITIES))
async def test_fuzz_every_operation(fleet: Fleet, identity: str) -> None:
    who = IDENTITIES[identity]
    started = time.monotonic()
    sent = await asyncio.to_thread(fuzz, fleet, who)
    took = time.monotonic() - started
    print(f"\nfuzz {identity}: {sum(sent.values())} requests over {len(sent)} operations "
          f"in {took:.1f} s")  # fmt: skip
    assert all(sent.values()), [k for k, v in sent.items() if not v]
    findings, fleet.findings[:] = list(fleet.findings), []
    assert not findings, "\n\n".join(findings)


async def test_no_user_reaches_another_users_bot(fleet: Fleet) -> None:
    """Every operation on a bot, every method, as alice on bob's bot: never a 2xx."""
    h = fleet.harness
    for operation in _operations(fleet.schema):
        if "{instanceId}" not in operation.path:
            continue
        path = concrete(operation.path, instanceId="bob-bot-1")
        status, body = await h.call(operation.method.upper(), path, ALICE)
        if path.startswith("/ui/"):  # a page takes no token: it sends her to sign in
            assert b"bob-bot-1" not in body and b"Sign in" in body, (path, status, body)
            continue
        assert 400 <= status < 500, (operation.method, path, status, body)


async def test_an_undeclared_method_is_a_405_naming_the_declared_ones(fleet: Fleet) -> None:
    h = fleet.harness
    assert h.http is not None
    for path, item in fleet.document["paths"].items():
        declared = {verb.upper() for verb in item if verb != "parameters"}
        url = h.base + concrete(path)
        for method in {"GET", "POST", "PUT", "PATCH", "DELETE"} - declared:
            async with h.http.request(method, url, headers=h.headers()) as r:
                if path.startswith(("/api/bots/{instanceId}/", "/bots/")):
                    # Other methods of /api/bots/{id}/start or of token/login are proxy
                    # paths: they reach the bot, or token/* is refused with a 404.
                    assert r.status < 500 or r.status in PROXY_FAILURES, (method, path)
                    continue
                assert r.status == 405, (method, path, r.status)
                expected = declared | ({"HEAD"} if "GET" in declared else set())
                assert set(r.headers["Allow"].split(",")) == expected, (method, path)
