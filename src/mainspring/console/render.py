"""The console's Jinja2 environment: autoescaping always on, and filters for times and values.

Times are shown as ISO 8601 with their offset, in the configured display zone, so a reader
never has to guess which zone a time is in.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from mainspring.api.auth import CSRF_FIELD, csrf_token
from mainspring.services.auth import Principal

CONSOLE_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = CONSOLE_DIR / "templates"
STATIC_DIR = CONSOLE_DIR / "static"


def format_instant(value: datetime | None, tz: ZoneInfo) -> str:
    if value is None:
        return "—"
    return value.astimezone(tz).isoformat(timespec="milliseconds")


def format_duration(ms: float | None) -> str:
    """Milliseconds as a short human duration: ``850 ms``, ``12.4 s``, ``3 m 05 s``."""
    if ms is None:
        return "—"
    if ms < 1000:
        return f"{ms:.0f} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} m {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} m"


def format_json(value: Any) -> str:
    """Pretty JSON for display; the result is still escaped by the template."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def format_trigger(spec: dict[str, Any]) -> str:
    kind = spec.get("kind", "?")
    if kind == "cron":
        return f"cron {spec.get('expr', '')}"
    if kind == "interval":
        return f"every {format_duration(float(spec.get('every_ms', 0)))}"
    if kind == "once":
        return f"once at {spec.get('at', '')}"
    return str(kind)


def make_templates(display_timezone: str) -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    tz = ZoneInfo(display_timezone)
    env.filters["when"] = lambda value: format_instant(value, tz)
    env.filters["duration"] = format_duration
    env.filters["pretty_json"] = format_json
    env.filters["trigger"] = format_trigger
    env.globals["display_timezone"] = display_timezone
    env.globals["csrf_field"] = CSRF_FIELD
    return Jinja2Templates(env=env)


def render(
    request: Request,
    name: str,
    context: dict[str, Any],
    user: Principal | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """Render a page; a logged-in user also gets the CSRF token for the logout form."""
    templates: Jinja2Templates = request.app.state.templates
    page = {"user": user, "csrf": csrf_token(request) if user else "", **context}
    return templates.TemplateResponse(request, name, page, status_code=status_code)
