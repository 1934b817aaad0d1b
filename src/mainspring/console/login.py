"""Logging in and out of the console; both forms are CSRF-protected."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from mainspring.api.auth import (
    CSRF_FIELD,
    csrf_token,
    end_session,
    require_csrf,
    safe_next,
    session_principal,
    start_session,
)
from mainspring.api.deps import Db, SecretKey
from mainspring.console.render import render
from mainspring.services.users import authenticate

router = APIRouter(include_in_schema=False)

FormText = Annotated[str, Form(max_length=1000)]
CsrfField = Annotated[str, Form(alias=CSRF_FIELD, max_length=200)]
NextForm = Annotated[str, Form(alias="next", max_length=1000)]
NextQuery = Annotated[str, Query(alias="next", max_length=1000)]


def _login_form(
    request: Request, next_path: str, username: str = "", error: str | None = None
) -> HTMLResponse:
    context = {
        "next": next_path,
        "username": username,
        "error": error,
        "login_csrf": csrf_token(request),
    }
    return render(request, "login.html", context)


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
    user = authenticate(db, username, password)
    if user is None:
        return _login_form(request, target, username, "Wrong username or password.")
    start_session(request, user, secret_key)
    return RedirectResponse(target, status_code=303)


@router.post("/logout")
def logout(request: Request, csrf: CsrfField = "") -> RedirectResponse:
    require_csrf(request, csrf)
    end_session(request)
    return RedirectResponse("/login", status_code=303)
