"""The console's Jinja2 environment (autoescaping always on, gettext) and ``render``.

Each page is rendered in its reader's language and time zone (``console.prefs``). Times are
shown in that zone, to the second in tables and to the millisecond with the UTC offset where
precision matters, and every page names the zone, so a reader never guesses.
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
from markupsafe import Markup, escape

from mainspring.api.auth import CSRF_FIELD, csrf_token
from mainspring.console.i18n import Lang, language_choices
from mainspring.console.prefs import Prefs, request_prefs, take_flashes
from mainspring.core.states import Role
from mainspring.services.auth import Principal

CONSOLE_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = CONSOLE_DIR / "templates"
STATIC_DIR = CONSOLE_DIR / "static"
DASH = "—"
REFRESH_HEADER = "X-Console-Refresh"


def format_instant(value: datetime | None, tz: ZoneInfo, precise: bool = False) -> str:
    """``2025-03-01 12:00:05`` in ``tz``; precise: ISO 8601 with milliseconds and offset."""
    if value is None:
        return DASH
    local = value.astimezone(tz)
    if precise:
        return local.isoformat(timespec="milliseconds")
    return local.strftime("%Y-%m-%d %H:%M:%S")


def zone_label(tz: ZoneInfo, at: datetime | None = None) -> str:
    """``Asia/Shanghai (UTC+08:00)``: the zone by name, with its offset now."""
    offset = (at or datetime.now(tz)).astimezone(tz).strftime("%z")
    return f"{tz.key} (UTC{offset[:3]}:{offset[3:]})"


def format_duration(ms: float | None) -> str:
    """Milliseconds as a short human duration: ``850 ms``, ``12.4 s``, ``3 m 05 s``."""
    if ms is None:
        return DASH
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


def compact_json(value: Any) -> str:
    """One-line JSON for display (non-ASCII kept); the template escapes it."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def format_trigger(spec: dict[str, Any], lang: Lang | None = None) -> str:
    """A trigger in words: ``cron 0 2 * * *``, ``every 2.0 s``, ``once at …``, ``manual``."""
    gettext = lang.gettext if lang is not None else (lambda message: message)
    kind = spec.get("kind", "?")
    if kind == "cron":
        return f"cron {spec.get('expr', '')}"
    if kind == "interval":
        every = format_duration(float(spec.get("every_ms", 0)))
        return gettext("every %(duration)s") % {"duration": every}
    if kind == "once":
        return gettext("once at %(time)s") % {"time": spec.get("at", "")}
    if kind == "manual":
        return gettext("manual only")
    return str(kind)


def run_summary(result: Any, limit: int = 120) -> str:
    """One line for a runs table: a shell task's last output line, else the result as JSON."""
    if result is None:
        return ""
    if isinstance(result, dict) and isinstance(result.get("output_tail"), str):
        lines = [line for line in result["output_tail"].splitlines() if line.strip()]
        text = lines[-1] if lines else ""
    elif isinstance(result, str):
        text = result
    else:
        text = json.dumps(result, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@jinja2.pass_context
def _gettext(context: jinja2.runtime.Context, message: str) -> str:
    lang = context.get("lang")
    return lang.gettext(message) if isinstance(lang, Lang) else message


@jinja2.pass_context
def _ngettext(context: jinja2.runtime.Context, singular: str, plural: str, n: int) -> str:
    lang = context.get("lang")
    if isinstance(lang, Lang):
        return lang.ngettext(singular, plural, n)
    return singular if n == 1 else plural


@jinja2.pass_context
def _translate(context: jinja2.runtime.Context, value: Any) -> str:
    """A value's translation if the catalog has one, else the value; no %-formatting."""
    lang = context.get("lang")
    text = "" if value is None else str(value)
    return lang.gettext(text) if isinstance(lang, Lang) and text else text


@jinja2.pass_context
def _time_tag(
    context: jinja2.runtime.Context, value: datetime | None, precise: bool = False
) -> Markup:
    """A ``<time>`` element in the reader's zone, the exact instant in its title."""
    if value is None:
        return escape(DASH)
    tz: ZoneInfo = context["tz"]
    shown = format_instant(value, tz, precise)
    exact = format_instant(value, tz, precise=True)
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        value.isoformat(), exact, shown
    )


@jinja2.pass_context
def _trigger(context: jinja2.runtime.Context, spec: dict[str, Any]) -> str:
    lang = context.get("lang")
    return format_trigger(spec, lang if isinstance(lang, Lang) else None)


def is_refresh(request: Request) -> bool:
    return request.headers.get(REFRESH_HEADER) == "1"


def make_templates(display_timezone: str) -> Jinja2Templates:
    """The environment; ``display_timezone`` is the zone for readers without one of their own."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=["jinja2.ext.i18n"],
    )
    env.install_gettext_callables(_gettext, _ngettext, newstyle=True)  # type: ignore[attr-defined]
    env.filters["when"] = _time_tag
    env.filters["duration"] = format_duration
    env.filters["pretty_json"] = format_json
    env.filters["json"] = compact_json
    env.filters["trigger"] = _trigger
    env.filters["summary"] = run_summary
    env.filters["tr"] = _translate
    env.globals["default_timezone"] = display_timezone
    env.globals["csrf_field"] = CSRF_FIELD
    env.globals["languages"] = language_choices()
    return Jinja2Templates(env=env)


def render(
    request: Request,
    name: str,
    context: dict[str, Any],
    user: Principal | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """Render a page in the reader's language and zone; a logged-in reader also gets the
    CSRF token (forms, the API's ``X-CSRF-Token``) and any messages left for them."""
    templates: Jinja2Templates = request.app.state.templates
    prefs: Prefs = request_prefs(request)
    tz = ZoneInfo(prefs.timezone)
    page = {
        "user": user,
        "can_operate": user is not None and user.allows(Role.OPERATOR),
        "is_admin": user is not None and user.allows(Role.ADMIN),
        "csrf": csrf_token(request) if user else "",
        "lang": Lang(prefs.language),
        "tz": tz,
        "tz_label": zone_label(tz),
        # A page's own background refresh (app.js) leaves the messages for the page itself.
        "flashes": take_flashes(request) if user and not is_refresh(request) else [],
        **context,
    }
    return templates.TemplateResponse(request, name, page, status_code=status_code)
