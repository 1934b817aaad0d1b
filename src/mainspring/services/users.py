"""Users and password checks. Passwords are hashed with Argon2id (argon2-cffi)."""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mainspring.core.states import Role
from mainspring.db.models import User
from mainspring.errors import ConflictError, ValidationError
from mainspring.services.clock import utcnow

_hasher = PasswordHasher()
# Verifying against this keeps the time of a login with an unknown user like a known one.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def create_user(session: Session, username: str, password: str, role: Role) -> User:
    if not username or len(username) > 150:
        raise ValidationError("username", "1-150 characters required")
    if len(password) < 8:
        raise ValidationError("password", "must be at least 8 characters")
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise ConflictError(f"a user named {username!r} already exists")
    user = User(
        username=username,
        password_hash=hash_password(password),
        role=role.value,
        is_active=True,
        created_at=utcnow(),
    )
    session.add(user)
    session.flush()
    return user


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The active user with these credentials, or None; constant work either way."""
    user = session.scalar(select(User).where(User.username == username))
    stored = user.password_hash if user is not None else _DUMMY_HASH
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


def has_users(session: Session) -> bool:
    return bool(session.scalar(select(func.count(User.id))))


def ensure_admin(session: Session, password: str | None) -> str | None:
    """Create the first admin when there is no user; return the password if it was generated."""
    if has_users(session):
        return None
    generated = password is None
    secret = password if password is not None else secrets.token_urlsafe(12)
    create_user(session, "admin", secret, Role.ADMIN)
    return secret if generated else None
