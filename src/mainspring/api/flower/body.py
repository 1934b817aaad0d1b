"""Reading a Flower task submission: ``{"args": [...], "kwargs": {...}, <options>}``.

Flower decodes the raw body as JSON whatever its content type, and scripts rely on it:
``curl -d '{"args":[1,2]}'`` sends ``application/x-www-form-urlencoded``, and seed 000 even
sends a malformed content-type header. So the body is read raw here, never through FastAPI's
form or JSON parsing. The keys besides ``args`` and ``kwargs`` are ``apply_async`` options;
the ones that mean something to Mainspring are translated to ``TaskOptions``, and any other
is refused by name rather than silently dropped.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request
from pydantic import ValidationError as PydanticValidationError

from mainspring.api.flower.deps import bad_request, local_instant
from mainspring.services.tasks import TaskOptions

MAX_BODY_BYTES = 4 * 1024 * 1024
FLOWER_EXAMPLE = "2026-01-01 02:00:00.000000"
MAX_SECONDS = 10 * 366 * 24 * 3600.0  # a countdown or expiry beyond ten years is a mistake

# Options copied as they are; ``routing_key`` stands for the queue on the default exchange.
PLAIN_OPTIONS = ("queue", "worker", "priority", "time_limit", "soft_time_limit")
TIME_OPTIONS = ("countdown", "eta", "expires")
ALLOWED_OPTIONS = (*PLAIN_OPTIONS, "routing_key", *TIME_OPTIONS)


@dataclass(frozen=True)
class TaskCall:
    """A submission as Mainspring runs it; ``due`` is set when it must wait (countdown/ETA)."""

    args: list[Any]
    kwargs: dict[str, Any]
    options: TaskOptions
    due: datetime | None = None


async def read_json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object; an empty body is ``{}``. Anything else is a 400."""
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise bad_request("body", f"is larger than {MAX_BODY_BYTES} bytes")
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        message = str(exc) if isinstance(exc, ValueError) else "nested too deeply"
        raise bad_request("body", f"is not valid JSON ({message})") from None
    if not isinstance(data, dict):
        raise bad_request("body", 'must be a JSON object, e.g. {"args": [1, 2]}')
    return data


def _no_constant(name: str) -> Any:
    """``NaN`` and ``Infinity`` are not JSON, and databases refuse to store them."""
    raise ValueError(f"{name} is not a JSON number")


def parse_call(body: dict[str, Any], zone: ZoneInfo, now: datetime) -> TaskCall:
    """Split a Flower body into arguments, options and an optional due instant.

    ``now`` is aware; a naive ``eta``/``expires`` date-time is read in ``zone`` (the
    configured time zone), as the operators who write them think of time."""
    body = dict(body)
    args = body.pop("args", None)
    kwargs = body.pop("kwargs", None)
    if args is None:
        args = []
    if kwargs is None:
        kwargs = {}
    if not isinstance(args, list):
        raise bad_request("args", "must be an array")
    if not isinstance(kwargs, dict):
        raise bad_request("kwargs", "must be an object")
    options = _flat_options(body)
    due = _due(options, zone, now)
    values: dict[str, Any] = {k: options[k] for k in PLAIN_OPTIONS if k in options}
    if "queue" not in values and "routing_key" in options:
        values["queue"] = options["routing_key"]
    if "expires" in options:
        values["expires"] = _expires_seconds(options["expires"], zone, now, due or now)
    return TaskCall(args=args, kwargs=kwargs, options=_task_options(values), due=due)


def _flat_options(body: dict[str, Any]) -> dict[str, Any]:
    """Top-level options, plus those of an ``options`` object (top level wins)."""
    nested = body.pop("options", None)
    if nested is not None and not isinstance(nested, dict):
        raise bad_request("options", "must be an object")
    options = {**(nested or {}), **body}
    for key in options:
        if key not in ALLOWED_OPTIONS:
            hint = " (Mainspring assigns the task id)" if key == "task_id" else ""
            accepted = ", ".join(ALLOWED_OPTIONS)
            # Name the option only if it is a plain name: never echo arbitrary input.
            field = key if key.isascii() and key.isidentifier() and len(key) <= 64 else "options"
            raise bad_request(field, f"is not a supported option{hint}; accepted: {accepted}")
    return {k: v for k, v in options.items() if v is not None}


def _task_options(values: dict[str, Any]) -> TaskOptions:
    try:
        return TaskOptions.model_validate(values)
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "options"
        raise bad_request(field, str(first["msg"])) from None


def _number(field: str, value: Any) -> float | None:
    """A finite number from a JSON number or numeric string; None if it is not one."""
    if isinstance(value, bool):
        raise bad_request(field, "must be a number")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        raise bad_request(field, "must be a number or a date-time string")
    if not math.isfinite(number) or abs(number) > MAX_SECONDS:
        raise bad_request(field, f"must be a number of seconds up to {MAX_SECONDS:.0f}")
    return number


def _instant(field: str, value: Any, zone: ZoneInfo) -> datetime:
    """Flower's ``%Y-%m-%d %H:%M:%S.%f`` or any ISO 8601 date-time; naive means ``zone``."""
    if not isinstance(value, str):
        raise bad_request(field, f"must be a date-time string like {FLOWER_EXAMPLE}")
    return local_instant(field, value, zone, FLOWER_EXAMPLE)


def _due(options: dict[str, Any], zone: ZoneInfo, now: datetime) -> datetime | None:
    """When a countdown or ETA asks the run to start; None for now (or a past ETA)."""
    if "countdown" in options and "eta" in options:
        raise bad_request("countdown", "give either countdown or eta, not both")
    if "countdown" in options:
        seconds = _number("countdown", options["countdown"])
        if seconds is None or seconds < 0:
            raise bad_request("countdown", "must be a number of seconds, 0 or more")
        return now + timedelta(seconds=seconds) if seconds > 0 else None
    if "eta" in options:
        eta = _instant("eta", options["eta"], zone)
        return eta if eta > now else None
    return None


def _expires_seconds(value: Any, zone: ZoneInfo, now: datetime, start: datetime) -> float:
    """``expires`` (seconds from now, as in Celery, or a date-time) as the seconds between
    ``start`` (when the run is published: now, or its due instant) and the expiry."""
    seconds = _number("expires", value)
    at = now + timedelta(seconds=seconds) if seconds is not None else None
    if at is None:
        at = _instant("expires", value, zone)
    seconds = (at - start).total_seconds()
    if seconds <= 0:
        raise bad_request("expires", "is already past; give a later time or more seconds")
    return seconds
