"""Who is calling: users found by session, password or API token, and what their role allows.

Pure database logic with no web framework, so the API, the console and later the CLI share
one set of rules: a user must exist and be active, a token must be unrevoked and unexpired,
and a token never grants more than its owner's current role.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

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
    now = now or utcnow()
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
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
    return _principal(user, AuthMethod.TOKEN, token_role)


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
