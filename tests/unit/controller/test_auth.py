"""Authentication: the admin token, platform JWTs, our refresh tokens, basic auth, the cache."""

from __future__ import annotations

import base64
import time
import warnings
from typing import Any

import jwt
import pytest

from controller import auth as auth_module
from controller.auth import ADMIN, Authenticator, Principal
from controller.errors import Forbidden, Unauthorized
from tests.support import ADMIN_TOKEN, JWT_SECRET, user_token


def hs512() -> str:
    """A token signed with the right secret but another algorithm than HS256."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyJWT warns that the key is short for SHA-512
        return jwt.encode({"sub": "alice", "role": "user"}, JWT_SECRET, algorithm="HS512")


@pytest.fixture
def auth() -> Authenticator:
    return Authenticator(ADMIN_TOKEN, JWT_SECRET)


def basic(user: str, token: str) -> str:
    return base64.b64encode(f"{user}:{token}".encode()).decode()


def test_admin_token(auth: Authenticator) -> None:
    assert auth.bearer(ADMIN_TOKEN) == ADMIN
    assert auth.bearer(ADMIN_TOKEN).is_admin
    assert auth.from_header(f"Bearer {ADMIN_TOKEN}") == ADMIN
    assert auth.from_header(f"bearer   {ADMIN_TOKEN}  ") == ADMIN


def test_admin_token_is_not_a_refresh_token(auth: Authenticator) -> None:
    with pytest.raises(Unauthorized):
        auth.bearer(ADMIN_TOKEN, kind="refresh")


def test_user_jwt(auth: Authenticator) -> None:
    who = auth.bearer(user_token("alice"))
    assert who == Principal("alice", "user")
    assert not who.is_admin
    admin = auth.bearer(user_token("ops-1", "admin"))
    assert admin.is_admin


@pytest.mark.parametrize(
    "token",
    [
        jwt.encode({"sub": "alice", "role": "user"}, "another-secret-" * 3, algorithm="HS256"),
        user_token("alice", exp=int(time.time()) - 10),
        jwt.encode({"role": "user"}, JWT_SECRET, algorithm="HS256"),
        jwt.encode({"sub": "alice"}, JWT_SECRET, algorithm="HS256"),
        user_token("alice", "superuser"),
        user_token("alice", ""),
        user_token("admin", "user"),
        user_token("../etc"),
        user_token("a b"),
        user_token("x\n[program:evil]"),
        hs512(),
        jwt.encode({"sub": "alice", "role": "user"}, None, algorithm="none"),
        "not-a-jwt",
        "",
        ADMIN_TOKEN + "x",
        ADMIN_TOKEN[:-1],
    ],
    ids=[
        "wrong-secret", "expired", "no-sub", "no-role", "bad-role", "empty-role",
        "admin-sub-user-role", "path-sub", "space-sub", "newline-sub", "hs512", "alg-none",
        "garbage", "empty", "admin-plus", "admin-prefix",
    ],
)  # fmt: skip
def test_bad_tokens_are_unauthorized(auth: Authenticator, token: str) -> None:
    with pytest.raises(Unauthorized):
        auth.bearer(token)
    with pytest.raises(Unauthorized):
        auth.from_header(f"Bearer {token}")


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Token abc", ADMIN_TOKEN])
def test_missing_or_malformed_header(auth: Authenticator, header: str | None) -> None:
    with pytest.raises(Unauthorized):
        auth.from_header(header)


def test_refresh_and_access_tokens_are_not_interchangeable(auth: Authenticator) -> None:
    alice = Principal("alice", "user")
    access = auth.issue(alice)
    refresh = auth.issue(alice, "refresh")
    assert auth.bearer(access) == alice
    assert auth.bearer(refresh, kind="refresh") == alice
    with pytest.raises(Unauthorized):
        auth.bearer(refresh)
    with pytest.raises(Unauthorized):
        auth.from_header(f"Bearer {refresh}")
    with pytest.raises(Unauthorized):
        auth.bearer(access, kind="refresh")
    # A platform token (no typ) is an access token only.
    with pytest.raises(Unauthorized):
        auth.bearer(user_token("alice"), kind="refresh")


def test_issued_tokens_expire(auth: Authenticator) -> None:
    claims = jwt.decode(auth.issue(ADMIN), JWT_SECRET, algorithms=["HS256"])
    assert claims["sub"] == "admin"
    assert claims["role"] == "admin"
    assert 0 < claims["exp"] - time.time() <= auth_module.ACCESS_TTL


def test_basic_auth_with_user_and_token(auth: Authenticator) -> None:
    token = user_token("alice")
    assert auth.basic(basic("alice", token)) == Principal("alice", "user")
    assert auth.from_header(f"Basic {basic('alice', token)}", allow_basic=True).user_id == "alice"


def test_basic_auth_is_only_accepted_where_allowed(auth: Authenticator) -> None:
    with pytest.raises(Unauthorized):
        auth.from_header(f"Basic {basic('alice', user_token('alice'))}")


@pytest.mark.parametrize(
    "value",
    [
        basic("bob", user_token("alice")),
        basic("", user_token("alice")),
        basic("alice", "wrong"),
        basic("alice", user_token("alice", exp=int(time.time()) - 1)),
        "!!!not base64!!!",
        base64.b64encode(b"\xff\xfe:x").decode(),
        base64.b64encode(b"no-colon").decode(),
    ],
    ids=["other-user", "no-user", "bad-token", "expired", "not-b64", "not-utf8", "no-colon"],
)
def test_bad_basic_credentials(auth: Authenticator, value: str) -> None:
    with pytest.raises(Unauthorized):
        auth.basic(value)


def test_basic_with_a_refresh_token_is_refused(auth: Authenticator) -> None:
    refresh = auth.issue(Principal("alice", "user"), "refresh")
    with pytest.raises(Unauthorized):
        auth.basic(basic("alice", refresh))


def count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = jwt.decode

    def spy(token: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(auth_module.jwt, "decode", spy)
    return calls


def test_a_token_is_verified_once(auth: Authenticator, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_decodes(monkeypatch)
    token = user_token("alice")
    for _ in range(100):
        assert auth.bearer(token).user_id == "alice"
    assert calls == [token]
    other = user_token("bob")
    auth.bearer(other)
    auth.bearer(other)
    assert calls == [token, other]


def test_the_admin_token_needs_no_decoding(
    auth: Authenticator, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = count_decodes(monkeypatch)
    auth.bearer(ADMIN_TOKEN)
    assert calls == []


def test_a_cached_token_still_expires(auth: Authenticator, monkeypatch: pytest.MonkeyPatch) -> None:
    token = user_token("alice", exp=int(time.time()) + 60)
    assert auth.bearer(token).user_id == "alice"
    real_time = time.time
    monkeypatch.setattr(auth_module.time, "time", lambda: real_time() + 120)
    with pytest.raises(Unauthorized, match="expired"):
        auth.bearer(token)


def test_a_rejected_token_is_rejected_every_time(auth: Authenticator) -> None:
    token = user_token("alice", "nope")
    for _ in range(3):
        with pytest.raises(Unauthorized):
            auth.bearer(token)


def test_kind_mismatch_is_checked_on_cached_tokens(auth: Authenticator) -> None:
    refresh = auth.issue(Principal("alice", "user"), "refresh")
    assert auth.bearer(refresh, kind="refresh").user_id == "alice"
    with pytest.raises(Unauthorized):
        auth.bearer(refresh)


def test_principal_permissions() -> None:
    alice = Principal("alice", "user")
    alice.require_owner("alice")
    with pytest.raises(Forbidden):
        alice.require_owner("bob")
    with pytest.raises(Forbidden):
        alice.require_admin()
    ADMIN.require_admin()
    ADMIN.require_owner("anyone")
