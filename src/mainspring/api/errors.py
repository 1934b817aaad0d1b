"""Turning errors into answers: JSON under ``/api/``, an HTML page in the console.

A user's mistake is always a 4xx that says what was wrong; only a bug is a 500.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from mainspring.api.auth import CsrfFailed, LoginRequired, login_url
from mainspring.console.render import render
from mainspring.errors import (
    ConflictError,
    MainspringError,
    NotFoundError,
    ServiceUnavailableError,
    ValidationError,
)

log = logging.getLogger(__name__)

API_PREFIX = "/api/"


def status_for(exc: MainspringError) -> int:
    if isinstance(exc, ValidationError):
        return 422
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ConflictError):
        return 409
    if isinstance(exc, ServiceUnavailableError):
        return 503  # not the caller's mistake, and worth retrying
    return 400


def is_api_request(request: Request) -> bool:
    path: str = request.scope.get("path", "")
    root: str = request.scope.get("root_path", "")
    return path.removeprefix(root).startswith(API_PREFIX)


def _error_page(request: Request, status: int, title: str, message: str) -> Response:
    context = {"title": title, "message": message, "status": status}
    return render(request, "error.html", context, status_code=status)


async def _mainspring_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MainspringError)
    status = status_for(exc)
    if status >= 500:
        log.warning("service unavailable: %s", exc)
    if is_api_request(request):
        detail: Any = str(exc)
        if isinstance(exc, ValidationError):
            detail = {"field": exc.field, "message": exc.message}
        return JSONResponse({"detail": detail}, status_code=status)
    return _error_page(request, status, "Cannot show this page", str(exc))


async def _login_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    return RedirectResponse(login_url(exc.next_path), status_code=303)


async def _csrf_failed(request: Request, exc: Exception) -> Response:
    message = (
        "The form was missing its security token or it did not match your session. "
        "Go back, reload the page and submit it again."
    )
    return _error_page(request, 403, "Form expired or forged", message)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if is_api_request(request):
        return await http_exception_handler(request, exc)
    return _error_page(request, exc.status_code, "Cannot show this page", str(exc.detail))


async def _request_invalid(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    if is_api_request(request):
        # Name the field and the problem, but never echo the input back: it may hold a
        # secret, and text that cannot be encoded would turn a 422 into a 500.
        errors = [
            {"loc": list(err["loc"]), "msg": str(err["msg"]), "type": str(err["type"])}
            for err in exc.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)
    fields = ", ".join(".".join(str(p) for p in err["loc"][1:]) for err in exc.errors())
    return _error_page(request, 422, "Invalid request", f"Check these values: {fields}")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(MainspringError, _mainspring_error)
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(CsrfFailed, _csrf_failed)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _request_invalid)
