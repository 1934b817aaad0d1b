"""Users and password checks. Passwords are hashed with Argon2id (argon2-cffi).

Every change made here with an ``Actor`` is written to the audit log in the same transaction.
Two rules keep the site manageable: an admin cannot delete or deactivate their own account,
and the last active admin can be neither removed, deactivated nor demoted. The second check
locks the active admin rows (``FOR UPDATE`` on PostgreSQL/MySQL; SQLite serialises writers),
so two admins demoting each other at once cannot both succeed.
"""

from __future__ import annotations

import functools
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from mainspring.core.states import Role
from mainspring.core.triggers import zone
from mainspring.db.models import ApiToken, User
from mainspring.errors import ConflictError, NotFoundError, ValidationError
from mainspring.services.audit import Actor, diff, record_as
from mainspring.services.clock import utcnow
from mainspring.services.ratelimit import LoginKey, LoginRateLimiter

_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """A hash to verify against for unknown users (same cost, no timing oracle); made on
    first use, not at import: every CLI command and process imports this module."""
    return _hasher.hash("not-a-real-password")


MIN_PASSWORD = 8
MAX_PASSWORD = 1000  # Argon2 takes any length; this only bounds the work per request
MAX_USERNAME = 150
# No ':' (it ends the name in HTTP Basic), no whitespace or control characters.
_USERNAME = re.compile(r"[^\s:\x00-\x1f\x7f]{1,150}")
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8}){0,3}")
SYSTEM_ACTOR = Actor("system")


class Keep(Enum):
    """Marks a nullable field an update leaves alone (``None`` clears it)."""

    KEEP = 0


@dataclass(frozen=True)
class UserUpdate:
    """The fields to change; ``None`` (or ``KEEP``) means unchanged."""

    role: Role | None = None
    is_active: bool | None = None
    password: str | None = None
    language: str | Keep | None = Keep.KEEP
    timezone: str | Keep | None = Keep.KEEP


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_username(username: str) -> None:
    if not _USERNAME.fullmatch(username):
        raise ValidationError(
            "username", f"1-{MAX_USERNAME} characters without spaces, ':' or control characters"
        )


def check_password(password: str, field: str = "password") -> None:
    if len(password) < MIN_PASSWORD:
        raise ValidationError(field, f"must be at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise ValidationError(field, f"must be at most {MAX_PASSWORD} characters")


def check_language(language: str | None) -> None:
    if language is not None and (len(language) > 16 or not _LANGUAGE.fullmatch(language)):
        raise ValidationError("language", "a language tag like 'en' or 'zh-CN' required")


def check_timezone(timezone: str | None) -> None:
    if timezone is None:
        return
    if len(timezone) > 64 or any(ord(ch) < 32 for ch in timezone):
        raise ValidationError("timezone", "an IANA time zone like 'Europe/Paris' required")
    zone(timezone)


def snapshot(user: User) -> dict[str, Any]:
    """The audited fields of a user (never the password hash)."""
    return {
        "username": user.username,
        "role": user.role,
        "active": user.is_active,
        "language": user.language,
        "timezone": user.timezone,
    }


def create_user(
    session: Session,
    username: str,
    password: str,
    role: Role,
    *,
    actor: Actor | None = None,
    language: str | None = None,
    timezone: str | None = None,
) -> User:
    """Add an active user; audited when ``actor`` is given."""
    check_username(username)
    check_password(password)
    check_language(language)
    check_timezone(timezone)
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise ConflictError(f"a user named {username!r} already exists; pick another name")
    user = User(
        username=username,
        password_hash=hash_password(password),
        role=Role(role).value,
        is_active=True,
        language=language,
        timezone=timezone,
        created_at=utcnow(),
    )
    session.add(user)
    session.flush()
    if actor is not None:
        record_as(session, actor, "create", "user", user.id, diff({}, snapshot(user)))
    return user


def get_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFoundError(f"no user with id {user_id}")
    return user


def get_user_by_name(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFoundError(f"no user named {username!r}; see 'mainspring users list'")
    return user


def list_users(session: Session) -> Sequence[User]:
    return session.scalars(select(User).order_by(User.username)).all()


def verify_password(user: User, password: str) -> bool:
    try:
        return _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The active user with these credentials, or None; constant work either way."""
    # A name that could never exist (a NUL byte breaks PostgreSQL) is not looked up at all.
    user = None
    if _USERNAME.fullmatch(username):
        user = session.scalar(select(User).where(User.username == username))
    stored = user.password_hash if user is not None else _dummy_hash()
    try:
        _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None or not user.is_active:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = utcnow()
    return user


def _validate_update(update: UserUpdate) -> None:
    if update.password is not None:
        check_password(update.password)
    if not isinstance(update.language, Keep):
        check_language(update.language)
    if not isinstance(update.timezone, Keep):
        check_timezone(update.timezone)


def _ensure_another_active_admin(session: Session, user: User, doing: str) -> None:
    """Refuse ``doing`` when ``user`` is the only active admin; locks the admin rows."""
    if user.role != Role.ADMIN.value or not user.is_active:
        return
    admins = session.scalars(
        select(User.id)
        .where(User.role == Role.ADMIN.value, User.is_active.is_(True))
        .with_for_update()
    ).all()
    if not any(admin_id != user.id for admin_id in admins):
        raise ConflictError(
            f"cannot {doing} {user.username!r}: it is the last active admin; "
            "make another user admin first"
        )


def update_user(
    session: Session,
    user: User,
    update: UserUpdate,
    actor: Actor,
    *,
    acting_user_id: int | None = None,
) -> User:
    """Apply ``update`` and audit the fields that changed (a password shows as ``***``)."""
    _validate_update(update)
    if update.is_active is False and user.id == acting_user_id:
        raise ConflictError("you cannot deactivate your own account; ask another admin")
    if update.is_active is False:
        _ensure_another_active_admin(session, user, "deactivate")
    if update.role is not None and update.role != Role.ADMIN:
        _ensure_another_active_admin(session, user, "demote")
    before = snapshot(user)
    if update.role is not None:
        user.role = update.role.value
    if update.is_active is not None:
        user.is_active = update.is_active
    if not isinstance(update.language, Keep):
        user.language = update.language
    if not isinstance(update.timezone, Keep):
        user.timezone = update.timezone
    changes = diff(before, snapshot(user))
    if update.password is not None:
        user.password_hash = hash_password(update.password)
        changes["before"]["password"] = changes["after"]["password"] = True  # masked
    if changes["after"]:
        session.flush()
        record_as(session, actor, "update", "user", user.id, changes)
    return user


def change_own_password(
    session: Session,
    user: User,
    current: str,
    new: str,
    actor: Actor,
    limiter: LoginRateLimiter | None = None,
) -> User:
    """Set a new password after checking the current one (so a stolen session or token is not
    enough). Wrong guesses count on ``limiter`` like failed logins from the same address."""
    key = LoginKey.of(user.username, actor.source_ip)
    if limiter is not None:
        limiter.check(key)
    if not verify_password(user, current):
        if limiter is not None:
            limiter.failed(key)
        raise ValidationError("current_password", "is not your current password")
    return update_user(session, user, UserUpdate(password=new), actor)


def delete_user(
    session: Session, user: User, actor: Actor, *, acting_user_id: int | None = None
) -> None:
    """Remove a user and their API tokens; the audit entry keeps what the user was."""
    if user.id == acting_user_id:
        raise ConflictError("you cannot delete your own account; ask another admin")
    _ensure_another_active_admin(session, user, "delete")
    changes = diff(snapshot(user), {})
    session.execute(delete(ApiToken).where(ApiToken.user_id == user.id))
    user_id = user.id
    session.delete(user)
    session.flush()
    record_as(session, actor, "delete", "user", user_id, changes)


def has_users(session: Session) -> bool:
    return bool(session.scalar(select(func.count(User.id))))


def ensure_admin(session: Session, password: str | None) -> str | None:
    """Create the first admin when there is no user; return the password if it was generated."""
    if has_users(session):
        return None
    generated = password is None
    secret = password if password is not None else secrets.token_urlsafe(12)
    create_user(session, "admin", secret, Role.ADMIN, actor=SYSTEM_ACTOR)
    return secret if generated else None
