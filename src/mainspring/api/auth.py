"""Authentication dependencies and CSRF protection for the API and the console.

Callers are identified by, in order: an ``Authorization`` header (HTTP Basic checked with
``services.users.authenticate``, or ``Bearer`` API tokens), else the console session cookie.
A wrong ``Authorization`` header fails; it never falls back to the cookie. Wrong Basic
passwords count toward the login rate limit (``services.ratelimit``, shared with the console's
login form); a blocked (username, address) gets a 429 with ``Retry-After``.

CSRF uses the synchronizer-token pattern: a random token kept in the signed session cookie,
echoed in a hidden form field (or the ``X-CSRF-Token`` header for cookie-authenticated API
writes) and compared with ``hmac.compare_digest``. We chose this over ``fastapi-csrf-protect``
because that package configures itself through a process-global ``@CsrfProtect.load_config``
(we build everything in factories), needs a second cookie and a set/unset call in every
handler, and would be one more dependency for what is a dozen lines on top of the session.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from mainspring.api.deps import Db, SecretKey, get_ctx
from mainspring.core.states import Role
from mainspring.db.models import User
from mainspring.services.auth import (
    Principal,
    cached_principal_for_token,
    principal_for_password,
    principal_for_session,
    principal_for_token,
    session_marker,
)
from mainspring.services.ratelimit import LoginRateLimiter, TooManyAttempts

SESSION_COOKIE = "mainspring_session"
SESSION_MAX_AGE_S = 12 * 3600
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_USER_ID = "uid"
_MARKER = "pw"
_LOGIN_AT = "iat"
_CSRF = "csrf"


class LoginRequired(Exception):
    """A console page was asked for without a live session; answered with a redirect."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class CsrfFailed(Exception):
    """A form came without the session's CSRF token; answered with a 403 page."""


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status_code=401,
        detail=detail,
        headers={"WWW-Authenticate": 'Basic realm="mainspring", charset="UTF-8"'},
    )


# --- CSRF -------------------------------------------------------------------------------


def csrf_token(request: Request) -> str:
    """The session's CSRF token, created on first use."""
    token = request.session.get(_CSRF)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        request.session[_CSRF] = token
    return token


def csrf_valid(request: Request, submitted: str | None) -> bool:
    expected = request.session.get(_CSRF)
    if not isinstance(expected, str) or not expected or not submitted:
        return False
    return hmac.compare_digest(expected.encode(), submitted.encode())


def require_csrf(request: Request, submitted: str | None) -> None:
    if not csrf_valid(request, submitted):
        raise CsrfFailed


# --- sessions ---------------------------------------------------------------------------


def start_session(request: Request, user: User, secret_key: str) -> None:
    """Log ``user`` in: a fresh session (no fixation) with a fresh CSRF token."""
    request.session.clear()
    request.session.update(
        {
            _USER_ID: user.id,
            _MARKER: session_marker(secret_key, user),
            _LOGIN_AT: int(time.time()),
            _CSRF: secrets.token_urlsafe(32),
        }
    )


def end_session(request: Request) -> None:
    request.session.clear()


def session_principal(request: Request, db: Session, secret_key: str) -> Principal | None:
    """The user of the session cookie, re-checked against the database on every request."""
    data = request.session
    user_id, marker, login_at = data.get(_USER_ID), data.get(_MARKER), data.get(_LOGIN_AT)
    if not isinstance(user_id, int) or not isinstance(marker, str):
        return None
    # Absolute lifetime, even if a later change makes the cookie's own expiry sliding.
    if not isinstance(login_at, int) or time.time() - login_at > SESSION_MAX_AGE_S:
        return None
    return principal_for_session(db, user_id, marker, secret_key)


# --- dependencies -----------------------------------------------------------------------


def parse_basic_credentials(value: str) -> tuple[str, str] | None:
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, sep, password = decoded.partition(":")
    return (username, password) if sep else None


def client_address(request: Request) -> str | None:
    """The peer's address. ``mainspring web`` does not trust proxy headers, so behind a
    reverse proxy this is the proxy's address."""
    return request.client.host if request.client else None


def login_limiter(request: Request) -> LoginRateLimiter:
    """The app's one login rate limiter (per process; see ``services.ratelimit``)."""
    limiter: LoginRateLimiter = request.app.state.login_limiter
    return limiter


def too_many_attempts(exc: TooManyAttempts) -> HTTPException:
    return HTTPException(
        status_code=429, detail=str(exc), headers={"Retry-After": str(exc.retry_after_s)}
    )


def _header_principal(request: Request, db: Session, header: str) -> Principal | None:
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "basic":
        creds = parse_basic_credentials(value)
        if creds is None:
            return None
        limiter, address = login_limiter(request), client_address(request)
        try:
            return principal_for_password(db, *creds, limiter=limiter, address=address)
        except TooManyAttempts as exc:
            raise too_many_attempts(exc) from None
    if scheme.lower() == "bearer" and value:
        return principal_for_token(db, value)
    return None


def _bearer_token(header: str) -> str | None:
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None


def _looked_up(request: Request, header: str | None, secret_key: str) -> Principal | None:
    """The caller, checked in a short transaction of its own (committed at once, so a
    token's ``last_used_at`` or a login time never waits on the route's work)."""
    with get_ctx(request).session() as db:
        if header:
            return _header_principal(request, db, header)
        return session_principal(request, db, secret_key)


async def _token_principal(
    request: Request, token: str, header: str, secret_key: str
) -> Principal | None:
    """The token's owner from the cache, else from the database, where concurrent requests
    with the same token share one look-up (a busy client's cache entry expiring would
    otherwise send all its requests in flight to the database at once)."""
    token_hash, principal = cached_principal_for_token(token)
    if principal is not None:
        return principal
    pending: dict[str, asyncio.Future[Principal | None]] = request.app.state.token_lookups
    loop = asyncio.get_running_loop()
    shared = pending.get(token_hash)
    if shared is not None and shared.get_loop() is loop:
        try:
            return await asyncio.shield(shared)
        except asyncio.CancelledError:
            if not shared.cancelled():  # this request itself was cancelled
                raise
            # the request that was looking it up went away: look it up here
    future: asyncio.Future[Principal | None] = loop.create_future()
    pending[token_hash] = future
    try:
        principal = await run_in_threadpool(_looked_up, request, header, secret_key)
    except Exception as exc:
        future.set_exception(exc)
        future.exception()  # retrieved: no "never retrieved" warning when nobody waited
        raise
    except BaseException:
        future.cancel()
        raise
    finally:
        if pending.get(token_hash) is future:
            del pending[token_hash]
    future.set_result(principal)
    return principal


async def current_user(request: Request, secret_key: SecretKey) -> Principal:
    """The API caller, or 401 (429 after too many wrong passwords). Cookie-authenticated
    writes also need the CSRF header.

    A bearer token checked within the last few seconds is answered from memory
    (``services.auth.TokenCache``) without touching the database; anything else is looked
    up in the thread pool, in a transaction that ends before the route runs, so a request
    never holds two database connections."""
    header = request.headers.get("authorization")
    if header:
        token = _bearer_token(header)
        if token:
            principal = await _token_principal(request, token, header, secret_key)
        else:
            principal = await run_in_threadpool(_looked_up, request, header, secret_key)
        if principal is None:
            raise unauthorized("invalid credentials")
        return principal
    principal = None
    if request.session:
        principal = await run_in_threadpool(_looked_up, request, None, secret_key)
    if principal is None:
        raise unauthorized(
            "authentication required: log in, use HTTP Basic (curl -u USER:PASSWORD) "
            "or an API token (Authorization: Bearer TOKEN)"
        )
    if request.method not in SAFE_METHODS and not csrf_valid(
        request, request.headers.get(CSRF_HEADER)
    ):
        raise HTTPException(status_code=403, detail=f"missing or wrong {CSRF_HEADER} header")
    return principal


CurrentUser = Annotated[Principal, Depends(current_user)]


def require_role(minimum: Role) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency allowing callers whose role is at least ``minimum``; others get 403."""

    async def check(principal: CurrentUser) -> Principal:
        if not principal.allows(minimum):
            raise HTTPException(
                status_code=403,
                detail=f"this needs the {minimum.value} role; you are {principal.role.value}",
            )
        return principal

    return check


# The callers a route needs, by lowest role (reads use ``CurrentUser``).
Operator = Annotated[Principal, Depends(require_role(Role.OPERATOR))]
Admin = Annotated[Principal, Depends(require_role(Role.ADMIN))]


def console_user(request: Request, db: Db, secret_key: SecretKey) -> Principal:
    """The logged-in console user; anyone else is redirected to the login page."""
    principal = session_principal(request, db, secret_key)
    if principal is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(target)
    return principal


ConsoleUser = Annotated[Principal, Depends(console_user)]


def safe_next(raw: str | None, default: str = "/dashboard") -> str:
    """``raw`` if it is a path on this site, else ``default``: no open redirects."""
    if not raw or not raw.startswith("/") or raw.startswith("//") or "\\" in raw:
        return default
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in raw):
        return default
    parts = urlsplit(raw)
    if parts.scheme or parts.netloc:
        return default
    return raw


def login_url(next_path: str) -> str:
    return "/login?next=" + quote(safe_next(next_path), safe="/")
