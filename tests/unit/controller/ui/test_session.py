"""SessionKeeper: signed session cookies, their expiry, revocation and CSRF tokens."""

from __future__ import annotations

import base64
import json

import pytest

from controller.auth import ADMIN, Principal
from controller.errors import Forbidden, Unauthorized
from controller.ui.session import SessionKeeper

SECRET = "s" * 40
ALICE = Principal("alice", "user")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def keeper(clock: Clock | None = None, secret: str = SECRET) -> SessionKeeper:
    return SessionKeeper(secret, 3600, clock or Clock())


def test_a_cookie_reads_back_as_its_principal():
    k = keeper()
    cookie, session = k.issue(ALICE)
    assert k.read(cookie) == session
    assert k.read(cookie).principal == ALICE
    admin_cookie, _ = k.issue(ADMIN)
    assert k.read(admin_cookie).principal.is_admin


def test_a_session_ends_after_its_ttl_or_its_token():
    clock = Clock()
    k = keeper(clock)
    cookie, session = k.issue(ALICE)
    assert session.expires == clock.now + 3600
    assert k.max_age(session) == 3600
    clock.now += 3599
    k.read(cookie)
    clock.now += 1
    with pytest.raises(Unauthorized, match="expired"):
        k.read(cookie)
    # Never longer than the token it was made from.
    _, short = k.issue(ALICE, token_expires=clock.now + 60)
    assert short.expires == clock.now + 60


@pytest.mark.parametrize("role", ["admin", "root"])
def test_an_altered_cookie_is_refused(role):
    k = keeper()
    cookie, _ = k.issue(ALICE)
    body, _, signature = cookie.partition(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["role"] = role
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    for value in (f"{forged}.{signature}", f"{body}.", "garbage", "", f"{body}.{signature}x"):
        with pytest.raises(Unauthorized):
            k.read(value)


def test_another_secret_reads_no_cookie():
    cookie, _ = keeper().issue(ALICE)
    with pytest.raises(Unauthorized):
        keeper(secret="t" * 40).read(cookie)


async def test_a_revoked_session_is_refused_and_others_are_not():
    k = keeper()
    first, s1 = k.issue(ALICE)
    second, _ = k.issue(ALICE)
    await k.revoke(s1)
    with pytest.raises(Unauthorized, match="signed out"):
        k.read(first)
    assert k.read(second).principal == ALICE


def test_csrf_token_belongs_to_its_session():
    k = keeper()
    _, s1 = k.issue(ALICE)
    _, s2 = k.issue(ALICE)
    token = k.csrf_token(s1)
    k.check_csrf(s1, token)
    assert token != k.csrf_token(s2)
    for wrong in (None, "", k.csrf_token(s2), token + "x"):
        with pytest.raises(Forbidden):
            k.check_csrf(s1, wrong)
