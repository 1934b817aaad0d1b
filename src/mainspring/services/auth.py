"""Who is calling: users found by session, password or API token, and what their role allows.

Pure database logic with no web framework, so the API, the console and later the CLI share
one set of rules: a user must exist and be active, a token must be unrevoked and unexpired,
and a token never grants more than its owner's current role.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import event, inspect, select
from sqlalchemy.orm import InstanceState, ORMExecuteState, Session

from mainspring.core.states import Role
from mainspring.db.models import ApiToken, User
from mainspring.errors import ValidationError
from mainspring.services.clock import utcnow
from mainspring.services.ratelimit import LoginKey, LoginRateLimiter
from mainspring.services.users import authenticate

TOKEN_PREFIX = "ms_"  # noqa: S105 - a marker that makes leaked tokens greppable
# Writing ``last_used_at`` on every request would turn each read into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)

_ROLE_RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


class AuthMethod(StrEnum):
    SESSION = "session"
    BASIC = "basic"
    TOKEN = "token"  # noqa: S105 - a method name, not a secret


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of one request."""

    user_id: int
    username: str
    role: Role
    method: AuthMethod

    def allows(self, minimum: Role) -> bool:
        return role_allows(self.role, minimum)


def role_allows(role: Role, minimum: Role) -> bool:
    """Whether ``role`` may do what ``minimum`` may (admin > operator > viewer)."""
    return _ROLE_RANK[role] >= _ROLE_RANK[minimum]


def _role(value: str) -> Role | None:
    try:
        return Role(value)
    except ValueError:
        return None


def _principal(user: User, method: AuthMethod, role: Role | None = None) -> Principal | None:
    user_role = _role(user.role)
    if user_role is None:
        return None
    if role is not None and not role_allows(user_role, role):
        role = user_role
    return Principal(user.id, user.username, role or user_role, method)


def hash_token(token: str) -> str:
    """SHA-256 hex of a bearer token: what ``api_tokens.token_hash`` stores."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def session_marker(secret_key: str, user: User) -> str:
    """A keyed digest of the user's password hash, kept in the session cookie.

    Changing the password changes the marker, which ends every other session of that user.
    """
    message = f"{user.id}:{user.password_hash}".encode()
    return hmac.new(secret_key.encode(), message, hashlib.sha256).hexdigest()[:32]


def principal_for_session(
    session: Session, user_id: int, marker: str, secret_key: str
) -> Principal | None:
    """The user a console session names, if still active and its password unchanged."""
    user = session.get(User, user_id)
    if user is None or not user.is_active:
        return None
    if not hmac.compare_digest(marker, session_marker(secret_key, user)):
        return None
    return _principal(user, AuthMethod.SESSION)


def check_login(
    session: Session,
    username: str,
    password: str,
    limiter: LoginRateLimiter | None = None,
    address: str | None = None,
) -> User | None:
    """``authenticate``, counted per (username, address) by ``limiter`` when given.

    While the key is blocked this raises ``TooManyAttempts`` without checking the password,
    so a guess made then tells the guesser nothing.
    """
    if limiter is None:
        return authenticate(session, username, password)
    key = LoginKey.of(username, address)
    limiter.check(key)
    user = authenticate(session, username, password)
    if user is None:
        limiter.failed(key)
    else:
        limiter.succeeded(key)
    return user


def principal_for_password(
    session: Session,
    username: str,
    password: str,
    limiter: LoginRateLimiter | None = None,
    address: str | None = None,
) -> Principal | None:
    """Check a username and password (HTTP Basic) with the same constant work as a login."""
    user = check_login(session, username, password, limiter, address)
    return None if user is None else _principal(user, AuthMethod.BASIC)


def principal_for_token(
    session: Session, token: str, now: datetime | None = None
) -> Principal | None:
    """The owner of a live bearer token, limited to the token's role."""
    return principal_for_token_hash(session, hash_token(token), now)


def principal_for_token_hash(
    session: Session, token_hash: str, now: datetime | None = None
) -> Principal | None:
    """``principal_for_token`` for a token already hashed (the cache's key)."""
    now = now or utcnow()
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash))
    if row is None or row.revoked_at is not None:
        return None
    if row.expires_at is not None and row.expires_at <= now:
        return None
    user = session.get(User, row.user_id)
    token_role = _role(row.role)
    if user is None or not user.is_active or token_role is None:
        return None
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        row.last_used_at = now
    principal = _principal(user, AuthMethod.TOKEN, token_role)
    if principal is not None:
        TOKEN_CACHE.put(token_hash, principal, row.expires_at)
    return principal


class TokenCache:
    """Recently checked bearer tokens, so a busy client costs no database read per request.

    Keyed by the token's SHA-256 (the secret itself is never kept); only valid tokens are
    kept, so a new token works at once. An entry lives ``ttl_s`` seconds: revoking a token,
    or deactivating or demoting its owner, in *another* process (a second web process, the
    CLI) takes effect within that bound; in this process any commit that changes a token or
    a user clears the cache at once (see ``_forget_on_change``).
    """

    def __init__(self, ttl_s: float = 5.0, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, Principal, datetime | None]] = {}
        self._lock = threading.Lock()

    def get(self, token_hash: str, now: datetime | None = None) -> Principal | None:
        entry = self._entries.get(token_hash)
        if entry is None:
            return None
        stored_at, principal, expires_at = entry
        if time.monotonic() - stored_at >= self.ttl_s or (
            expires_at is not None and expires_at <= (now or utcnow())
        ):
            self._entries.pop(token_hash, None)
            return None
        return principal

    def put(self, token_hash: str, principal: Principal, expires_at: datetime | None) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()  # crude but bounded; a miss only costs one read
            self._entries[token_hash] = (time.monotonic(), principal, expires_at)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


TOKEN_CACHE_TTL_S = 5.0
TOKEN_CACHE = TokenCache(TOKEN_CACHE_TTL_S)

_TOUCHES_AUTH = "mainspring_touches_auth"


# What a cached principal depends on; a login (``last_login_at``) or a token's
# ``last_used_at`` stamp does not clear the cache.
_AUTH_COLUMNS = frozenset({"role", "is_active", "revoked_at", "expires_at", "user_id"})


def _changes_auth(obj: object) -> bool:
    if not isinstance(obj, (ApiToken, User)):
        return False
    state: InstanceState[Any] = inspect(obj)
    attrs = state.attrs
    return any(attrs[key].history.has_changes() for key in _AUTH_COLUMNS if key in attrs)


@event.listens_for(Session, "after_flush")
def _note_auth_change(session: Session, _flush_context: Any) -> None:
    deleted = any(isinstance(obj, (ApiToken, User)) for obj in session.deleted)
    if deleted or any(_changes_auth(obj) for obj in session.dirty):
        _forget_on_change(session)


@event.listens_for(Session, "do_orm_execute")
def _note_auth_statement(state: ORMExecuteState) -> None:
    if not (state.is_update or state.is_delete):
        return
    table = getattr(state.statement, "table", None)
    if table is not None and table.name in (ApiToken.__tablename__, User.__tablename__):
        _forget_on_change(state.session)


def _forget_on_change(session: Session) -> None:
    """Clear the token cache now and again once the change commits (a request between the
    two could otherwise cache the old row for one more TTL)."""
    TOKEN_CACHE.clear()
    session.info[_TOUCHES_AUTH] = True


@event.listens_for(Session, "after_commit")
def _clear_after_commit(session: Session) -> None:
    if session.info.pop(_TOUCHES_AUTH, False):
        TOKEN_CACHE.clear()


@event.listens_for(Session, "after_rollback")
def _forget_flag(session: Session) -> None:
    session.info.pop(_TOUCHES_AUTH, None)


def cached_principal_for_token(token: str) -> tuple[str, Principal | None]:
    """The token's hash and, if it was checked within the cache's TTL, its principal."""
    token_hash = hash_token(token)
    return token_hash, TOKEN_CACHE.get(token_hash)


def create_api_token(
    session: Session,
    user: User,
    name: str,
    role: Role | None = None,
    expires_at: datetime | None = None,
) -> tuple[str, ApiToken]:
    """Store a new token for ``user`` and return its secret, which is never stored."""
    if not name or len(name) > 150:
        raise ValidationError("name", "1-150 characters required")
    user_role = Role(user.role)
    if role is not None and not role_allows(user_role, role):
        raise ValidationError("role", f"cannot exceed the owner's role {user_role.value!r}")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        user_id=user.id,
        name=name,
        token_hash=hash_token(secret),
        prefix=secret[:12],
        role=(role or user_role).value,
        created_at=utcnow(),
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return secret, row
