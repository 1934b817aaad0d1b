"""API tokens: created with a role no higher than the creator's, listed, revoked; all audited.

The secret (``ms_...``) is returned once by ``create_token`` and never stored: the table keeps
its SHA-256 and its first characters (``prefix``) so people can tell tokens apart. Revoking
keeps the row, so the list still shows when a token was last used. Everyone may manage their
own tokens; an admin may manage anyone's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mainspring.core.states import Role
from mainspring.db.models import ApiToken, User
from mainspring.errors import NotFoundError, ValidationError
from mainspring.services.audit import Actor, diff, record_as
from mainspring.services.auth import create_api_token, role_allows
from mainspring.services.clock import utcnow

MAX_EXPIRY_DAYS = 3650


class TokenStatus(StrEnum):
    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"


@dataclass(frozen=True)
class Caller:
    """Whose request it is: tokens are visible to their owner and to admins."""

    user_id: int
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN


def token_status(token: ApiToken, now: datetime | None = None) -> TokenStatus:
    now = now or utcnow()
    if token.revoked_at is not None:
        return TokenStatus.REVOKED
    if token.expires_at is not None and token.expires_at <= now:
        return TokenStatus.EXPIRED
    return TokenStatus.ACTIVE


def expiry(
    expires_at: datetime | None, expires_in_days: int | None, now: datetime | None = None
) -> datetime | None:
    """The expiry instant from either form (not both); it must lie in the future."""
    now = now or utcnow()
    if expires_at is not None and expires_in_days is not None:
        raise ValidationError("expires_at", "give expires_at or expires_in_days, not both")
    if expires_in_days is not None:
        if not 1 <= expires_in_days <= MAX_EXPIRY_DAYS:
            raise ValidationError("expires_in_days", f"must be 1-{MAX_EXPIRY_DAYS}")
        return now + timedelta(days=expires_in_days)
    if expires_at is None:
        return None
    if expires_at.tzinfo is None:
        raise ValidationError("expires_at", "needs a time zone offset, e.g. 2030-01-01T00:00Z")
    if expires_at <= now:
        raise ValidationError("expires_at", "must be in the future")
    if expires_at > now + timedelta(days=MAX_EXPIRY_DAYS):
        raise ValidationError("expires_at", f"must be within {MAX_EXPIRY_DAYS} days")
    return expires_at


def _snapshot(token: ApiToken, owner: str) -> dict[str, Any]:
    expires = token.expires_at.isoformat() if token.expires_at else None
    return {
        "name": token.name,
        "user": owner,
        "role": token.role,
        "prefix": token.prefix,
        "expires_at": expires,
    }


def create_token(
    session: Session,
    owner: User,
    name: str,
    actor: Actor,
    *,
    caller_role: Role,
    role: Role | None = None,
    expires_at: datetime | None = None,
) -> tuple[str, ApiToken]:
    """A new token for ``owner``; its role is capped by the owner's and the caller's roles."""
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise ValidationError("name", "must not contain control characters")
    owner_role = Role(owner.role)
    lower = owner_role if role_allows(caller_role, owner_role) else caller_role
    wanted = role or lower
    if not role_allows(caller_role, wanted):
        raise ValidationError("role", f"cannot exceed your own role {caller_role.value!r}")
    secret, row = create_api_token(session, owner, name, role=wanted, expires_at=expires_at)
    record_as(session, actor, "create", "token", row.id, diff({}, _snapshot(row, owner.username)))
    return secret, row


def list_tokens(
    session: Session, caller: Caller, owner_id: int | None = None
) -> Sequence[tuple[ApiToken, str]]:
    """Tokens with their owner's name, newest first: all for an admin, else the caller's;
    ``owner_id`` narrows the list to one user."""
    query = select(ApiToken, User.username).join(User, User.id == ApiToken.user_id)
    if not caller.is_admin:
        query = query.where(ApiToken.user_id == caller.user_id)
    if owner_id is not None:
        query = query.where(ApiToken.user_id == owner_id)
    rows = session.execute(query.order_by(ApiToken.id.desc()))
    return [(token, username) for token, username in rows]


def get_token(session: Session, token_id: int, caller: Caller) -> tuple[ApiToken, str]:
    """One token the caller may see; someone else's is reported as missing, not forbidden."""
    row = session.execute(
        select(ApiToken, User.username)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.id == token_id)
    ).first()
    if row is None or not (caller.is_admin or row[0].user_id == caller.user_id):
        raise NotFoundError(f"no token with id {token_id}; see the token list")
    return row[0], row[1]


def revoke_token(
    session: Session, token_id: int, caller: Caller, actor: Actor
) -> tuple[ApiToken, str]:
    """Revoke once (compare-and-set on ``revoked_at IS NULL``); revoking again is a no-op."""
    token, owner = get_token(session, token_id, caller)
    now = utcnow()
    result = session.execute(
        update(ApiToken)
        .where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    session.refresh(token)
    if result.rowcount:  # type: ignore[attr-defined]
        changes = {
            "before": {"revoked_at": None},
            "after": {"revoked_at": now.isoformat()},
            "owner": owner,
        }
        record_as(session, actor, "revoke", "token", token_id, changes)
    return token, owner
