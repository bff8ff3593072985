"""Who is calling: the admin token, or a JWT minted by the platform (or by our bot login).

Tokens are verified once and cached until they expire, so an authenticated
proxied request costs a dict lookup, not a signature check.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from dataclasses import dataclass

import jwt

from common.ids import is_valid_id
from controller.errors import Forbidden, Unauthorized

ROLES = ("user", "admin")
# Marks the tokens the controller issues at FreqTrade's login (never platform tokens).
ISSUER = "ftpool-bot-login"
ACCESS_TTL = 15 * 60
REFRESH_TTL = 30 * 24 * 3600
_CACHE_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def require_admin(self) -> None:
        if not self.is_admin:
            raise Forbidden("admin role required")

    def require_owner(self, owner_id: str) -> None:
        if not self.is_admin and owner_id != self.user_id:
            raise Forbidden("not your bot")


ADMIN = Principal("admin", "admin")


class Authenticator:
    def __init__(self, admin_token: str, jwt_secret: str) -> None:
        if len(admin_token) < 32 or len(jwt_secret) < 32:
            raise ValueError("the admin token and the JWT secret need 32 characters or more")
        self._admin_token = admin_token.encode()
        self._secret = jwt_secret
        self._cache: dict[str, tuple[Principal, float, str]] = {}

    def bearer(self, token: str, kind: str = "access") -> Principal:
        """The principal of a Bearer token; `kind` is 'access' or 'refresh'."""
        if kind == "access" and hmac.compare_digest(token.encode(), self._admin_token):
            return ADMIN
        cached = self._cache.get(token)
        now = time.time()
        if cached is None:
            cached = self._decode(token)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[token] = cached
        principal, expires, token_kind = cached
        if expires and now >= expires:
            self._cache.pop(token, None)
            raise Unauthorized("token expired")
        if token_kind != kind and not (kind == "access" and token_kind == "issued"):
            raise Unauthorized(f"not an {kind} token")
        return principal

    def expires(self, token: str) -> float:
        """When a (valid) token expires, as a Unix time; 0 if never (or the admin token)."""
        cached = self._cache.get(token)
        return cached[1] if cached is not None else 0

    def is_issued(self, token: str) -> bool:
        """Whether a (valid) token was issued by our own bot login rather than the platform."""
        cached = self._cache.get(token)
        return cached is not None and cached[2] in ("issued", "refresh")

    def _decode(self, token: str) -> tuple[Principal, float, str]:
        try:
            claims = jwt.decode(
                token, self._secret, algorithms=["HS256"], options={"require": ["sub", "role"]}
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token: {exc}") from None
        sub, role = claims.get("sub"), claims.get("role")
        if not is_valid_id(sub) or role not in ROLES:
            raise Unauthorized("token has an invalid sub or role")
        if sub == ADMIN.user_id and role != "admin":
            raise Unauthorized("user id 'admin' is reserved for the admin role")
        # Platform tokens carry no 'typ' and are access tokens; ours mark refresh tokens,
        # and tokens that bot login issued say so (they may not log in again).
        kind = "refresh" if claims.get("typ") == "refresh" else "access"
        if kind == "access" and claims.get("iss") == ISSUER:
            kind = "issued"
        return Principal(sub, role), float(claims.get("exp") or 0), kind

    def basic(self, header_value: str) -> Principal:
        """HTTP basic auth as freqtrade-client sends it: user id : one of the user's tokens."""
        try:
            raw = base64.b64decode(header_value, validate=True).decode()
            user, _, token = raw.partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthorized("malformed basic credentials") from None
        principal = self.bearer(token)
        if principal.user_id != user:
            raise Unauthorized("username does not match the token")
        return principal

    def issue(self, principal: Principal, kind: str = "access") -> str:
        now = int(time.time())
        ttl = REFRESH_TTL if kind == "refresh" else ACCESS_TTL
        claims = {
            "sub": principal.user_id, "role": principal.role, "iat": now, "exp": now + ttl,
            "iss": ISSUER,
        }  # fmt: skip
        if kind == "refresh":
            claims["typ"] = "refresh"
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def from_header(self, authorization: str | None, allow_basic: bool = False) -> Principal:
        if not authorization:
            raise Unauthorized("missing Authorization header")
        scheme, _, value = authorization.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer" and value:
            return self.bearer(value.strip())
        if scheme == "basic" and value and allow_basic:
            return self.basic(value.strip())
        raise Unauthorized("expected a Bearer token")
