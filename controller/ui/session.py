"""Dashboard sessions: a signed cookie that stands for a principal, and its CSRF token.

The cookie is `<payload>.<signature>`: the payload (user id, role, expiry and a random
session id) in URL-safe base64, the signature an HMAC-SHA256 of it under a key derived
from the controller's secrets (ADMIN_TOKEN and JWT_SECRET), so it cannot be forged or
altered without them, and replacing either ends every session. The CSRF token is an HMAC
of the session id under another key derived from the same secrets: the page gets it, a
cross-site request cannot read it. Signing out revokes the session id until the cookie
would have expired anyway: kept in the store (table ui_signed_out) before the answer, and
in memory for every request's check, loaded again at the controller's start, so a copied
cookie of a signed-out session stays refused across restarts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from common.ids import is_valid_id
from controller.auth import ROLES, Principal
from controller.errors import Forbidden, Unauthorized
from controller.store.store import Store

COOKIE = "ftpool_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf"
_MAX_COOKIE = 1024


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class Session:
    principal: Principal
    expires: float
    sid: str


class SessionKeeper:
    """Issues and verifies session cookies; `ttl` in seconds, `clock` for tests."""

    def __init__(
        self, secret: str, ttl: float, clock: Callable[[], float] = time.time,
        store: Store | None = None,
    ) -> None:  # fmt: skip
        root = secret.encode()
        self._sign_key = hmac.digest(root, b"ftpool-ui-session-v1", hashlib.sha256)
        self._csrf_key = hmac.digest(root, b"ftpool-ui-csrf-v1", hashlib.sha256)
        self.ttl = ttl
        self._clock = clock
        self._revoked: dict[str, float] = {}
        self._store = store  # where revocations outlive the process (None: memory only)

    async def load(self) -> None:
        """The signed-out sessions the store keeps, at start-up."""
        if self._store is not None:
            self._revoked = await self._store.signed_out_sessions(self._clock())

    def issue(self, principal: Principal, token_expires: float = 0) -> tuple[str, Session]:
        """A new session for a principal; it never outlives the token it was made from."""
        expires = self._clock() + self.ttl
        if token_expires:
            expires = min(expires, token_expires)
        session = Session(principal, expires, secrets.token_urlsafe(16))
        payload = json.dumps(
            {"sub": principal.user_id, "role": principal.role, "exp": expires, "sid": session.sid},
            separators=(",", ":"),
        ).encode()
        body = _b64(payload)
        return f"{body}.{self._sign(body)}", session

    def read(self, cookie: str) -> Session:
        """The session a cookie stands for; Unauthorized if forged, expired or revoked."""
        body, _, signature = cookie.partition(".")
        if len(cookie) > _MAX_COOKIE or not hmac.compare_digest(
            signature.encode(), self._sign(body).encode()
        ):
            raise Unauthorized("invalid session; sign in again")
        try:
            claims = json.loads(_unb64(body))
            principal = Principal(claims["sub"], claims["role"])
            expires, sid = float(claims["exp"]), str(claims["sid"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise Unauthorized("invalid session; sign in again") from None
        if not is_valid_id(principal.user_id) or principal.role not in ROLES:
            raise Unauthorized("invalid session; sign in again")
        now = self._clock()
        if now >= expires:
            raise Unauthorized("session expired; sign in again")
        if sid in self._revoked:
            raise Unauthorized("signed out; sign in again")
        return Session(principal, expires, sid)

    def valid(self, session: Session) -> bool:
        """Whether a session read earlier still holds: not expired, not signed out."""
        return self._clock() < session.expires and session.sid not in self._revoked

    def max_age(self, session: Session) -> int:
        """The cookie's Max-Age: what is left of the session, in whole seconds."""
        return max(1, round(session.expires - self._clock()))

    def csrf_token(self, session: Session) -> str:
        return _b64(hmac.digest(self._csrf_key, session.sid.encode(), hashlib.sha256))

    def check_csrf(self, session: Session, supplied: str | None) -> None:
        if not supplied or not hmac.compare_digest(
            supplied.encode(), self.csrf_token(session).encode()
        ):
            raise Forbidden("missing or wrong CSRF token")

    async def revoke(self, session: Session) -> None:
        """Sign a session out: saved first (a StoreError leaves it signed in, and says so)."""
        now = self._clock()
        if self._store is not None:
            await self._store.sign_out_session(session.sid, session.expires, now)
        self._revoked = {sid: exp for sid, exp in self._revoked.items() if exp > now}
        self._revoked[session.sid] = session.expires

    def _sign(self, body: str) -> str:
        return _b64(hmac.digest(self._sign_key, body.encode(), hashlib.sha256))
