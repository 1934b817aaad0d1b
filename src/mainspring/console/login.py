"""Logging in and out of the console; both forms are CSRF-protected."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from mainspring.api.auth import (
    CSRF_FIELD,
    client_address,
    csrf_token,
    end_session,
    login_limiter,
    require_csrf,
    safe_next,
    session_principal,
    start_session,
)
from mainspring.api.deps import Db, SecretKey
from mainspring.console.prefs import request_lang
from mainspring.console.render import render
from mainspring.services.auth import check_login
from mainspring.services.ratelimit import TooManyAttempts

router = APIRouter(include_in_schema=False)

FormText = Annotated[str, Form(max_length=1000)]
CsrfField = Annotated[str, Form(alias=CSRF_FIELD, max_length=200)]
NextForm = Annotated[str, Form(alias="next", max_length=1000)]
NextQuery = Annotated[str, Query(alias="next", max_length=1000)]


def _login_form(
    request: Request,
    next_path: str,
    username: str = "",
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    context = {
        "next": next_path,
        "username": username,
        "error": error,
        "login_csrf": csrf_token(request),
    }
    return render(request, "login.html", context, status_code=status_code)


@router.get("/login")
def login_page(
    request: Request, db: Db, secret_key: SecretKey, next_path: NextQuery = ""
) -> Response:
    """The login form, or straight on for someone already logged in."""
    target = safe_next(next_path)
    if session_principal(request, db, secret_key) is not None:
        return RedirectResponse(target, status_code=303)
    return _login_form(request, target)


@router.post("/login")
def login_submit(
    request: Request,
    db: Db,
    secret_key: SecretKey,
    username: FormText = "",
    password: FormText = "",
    csrf: CsrfField = "",
    next_path: NextForm = "",
) -> Response:
    """Check the CSRF token first, then the credentials; a failure shows the form again."""
    require_csrf(request, csrf)
    target = safe_next(next_path)
    limiter, address = login_limiter(request), client_address(request)
    try:
        user = check_login(db, username, password, limiter, address)
    except TooManyAttempts as exc:
        message = request_lang(request).gettext("Too many attempts, try again in %(seconds)s s.")
        error = message % {"seconds": exc.retry_after_s}
        response = _login_form(request, target, username, error, status_code=429)
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response
    if user is None:
        error = request_lang(request).gettext("Wrong username or password.")
        return _login_form(request, target, username, error)
    start_session(request, user, secret_key)
    return RedirectResponse(target, status_code=303)


@router.post("/logout")
def logout(request: Request, csrf: CsrfField = "") -> RedirectResponse:
    require_csrf(request, csrf)
    end_session(request)
    return RedirectResponse("/login", status_code=303)
