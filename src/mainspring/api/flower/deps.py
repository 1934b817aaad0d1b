"""What the Flower-compatible routes share: roles, the Celery app, error answers, and
Flower's way of reading arguments (query string or urlencoded body, ``strtobool`` booleans).

Routes that open their own short transactions (submitting, waiting for a result, talking to
workers) take the ``Released*`` caller from ``api.celery_dep``: the request's transaction is
closed once the caller is known, so SQLite's write lock is not held while they work. Routes
that only read through the request's ``Db`` take ``Viewer``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from fastapi import Depends, HTTPException, Request

from mainspring.api.auth import current_user
from mainspring.api.celery_dep import CeleryApp, Ctx, ReleasedCaller, ReleasedOperator
from mainspring.api.deps import get_ctx
from mainspring.api.schemas import ErrorOut, ValidationErrorOut
from mainspring.services.auth import Principal

__all__ = [
    "CeleryApp",
    "Ctx",
    "ReleasedCaller",
    "ReleasedOperator",
    "Viewer",
    "Zone",
    "argument",
    "bad_request",
    "local_instant",
    "parse_bool",
    "parse_float",
    "parse_int",
]

# Seconds to wait for a worker's reply: a command to one named worker returns as soon as it
# answers, so this only bounds the wait for a worker that is gone or busy.
CONTROL_TIMEOUT_S = 3.0
INSPECT_TIMEOUT_S = 2.0

TRUE_WORDS = frozenset({"y", "yes", "t", "true", "on", "1"})
FALSE_WORDS = frozenset({"n", "no", "f", "false", "off", "0"})

# Error answers, for the OpenAPI document: a Flower-style 400 names the argument.
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ValidationErrorOut},
    401: {"model": ErrorOut},
    403: {"model": ErrorOut},
    404: {"model": ErrorOut},
    429: {"model": ErrorOut},
    503: {"model": ErrorOut},
}

Viewer = Annotated[Principal, Depends(current_user)]


def bad_request(field: str, message: str) -> HTTPException:
    """Flower answers a malformed argument with 400; ours also names the argument."""
    return HTTPException(status_code=400, detail={"field": field, "message": message})


def parse_bool(name: str, raw: str | None, default: bool = False) -> bool:
    """Flower's boolean arguments (``strtobool``): yes/no, true/false, on/off, 1/0."""
    if raw is None or raw == "":
        return default
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise bad_request(name, "must be a boolean (true/false, yes/no, on/off, 1/0)")


def parse_int(
    name: str,
    raw: str | None,
    default: int | None = None,
    minimum: int | None = None,
    maximum: int = 2**31 - 1,
) -> int | None:
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise bad_request(name, "must be an integer") from None
    if minimum is not None and value < minimum:
        raise bad_request(name, f"must be at least {minimum}")
    if value > maximum:
        raise bad_request(name, f"must be at most {maximum}")
    return value


def parse_float(name: str, raw: str | None, minimum: float = 0.0) -> float | None:
    if raw is None or raw.strip() == "":
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        raise bad_request(name, "must be a number") from None
    if not minimum <= value <= 1e9:
        raise bad_request(name, f"must be a number from {minimum:g} to 1e9")
    return value


async def form_arguments(request: Request) -> dict[str, str]:
    """Arguments sent as an urlencoded body, as Flower's ``get_argument`` also reads them
    (``curl -d 'workername=w1@h&ratelimit=10/m'``). A body of another kind is ignored."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("", "application/x-www-form-urlencoded"):
        return {}
    body = await request.body()
    if not body or len(body) > 64 * 1024:
        return {}
    text = body.decode("utf-8", "replace")
    if text.lstrip().startswith(("{", "[")):
        return {}
    return dict(parse_qsl(text, keep_blank_values=True))


FormArgs = Annotated[dict[str, str], Depends(form_arguments)]


def argument(name: str, query: str | None, form: dict[str, str]) -> str | None:
    """A Flower argument from the query string, else from an urlencoded body."""
    return query if query is not None else form.get(name)


def local_instant(field: str, raw: str, zone: ZoneInfo, example: str) -> datetime:
    """An ISO 8601 date-time (Flower's ``%Y-%m-%d %H:%M[:%S.%f]`` is one) as aware UTC; naive
    means ``zone``. Years outside 1970-9998 are refused: no database or clock needs them."""
    try:
        parsed = datetime.fromisoformat(raw.strip())
        if not 1970 <= parsed.year <= 9998:
            raise ValueError("out of range")
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=zone)).astimezone(UTC)
    except (ValueError, OverflowError):
        raise bad_request(field, f"must be a date-time like {example} (years 1970-9998)") from None


async def zone(request: Request) -> ZoneInfo:
    """The configured time zone: naive date-times in Flower arguments are read in it."""
    return ZoneInfo(get_ctx(request).settings.timezone)


Zone = Annotated[ZoneInfo, Depends(zone)]
