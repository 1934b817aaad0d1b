"""The settings page (admins): the configuration this web process runs with, secrets masked.

Each ``Settings`` field is listed with its environment variable and whether it differs from
the default, then the values derived from them (database, broker, result backend, guard).
Masking reuses the rules the rest of Mainspring applies: a field named like a credential
(``recorder.masking``: ``secret_key``, ``admin_password``…) shows only whether it is set, a
URL loses its password and query values (``alerts.store.mask_url``: tokens often ride
there), and secrets inside lists and mappings are masked by key (``services.audit``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from mainspring.alerts.store import mask_url
from mainspring.api.deps import get_settings
from mainspring.console.deps import Admin
from mainspring.console.i18n import N_
from mainspring.console.render import render
from mainspring.errors import ConfigError
from mainspring.recorder.masking import MASK, is_secret_key
from mainspring.services.audit import mask_secrets
from mainspring.settings import Settings

router = APIRouter(include_in_schema=False)

ENV_PREFIX = "MAINSPRING_"
DERIVED = (
    ("resolved_database_url", N_("Database")),
    ("resolved_broker_url", N_("Broker")),
    ("resolved_result_backend", N_("Result backend")),
    ("resolved_guard_url", N_("Run guard (Redis)")),
)


@dataclass(frozen=True)
class Shown:
    """One setting as the page shows it."""

    name: str
    env: str
    value: str
    changed: bool
    masked: bool


def masked_text(name: str, value: Any) -> tuple[str, bool]:
    """The value as text with secrets masked, and whether anything was masked away."""
    if value is None:
        return "—", False
    if is_secret_key(name) and isinstance(value, str):
        return MASK, True
    if isinstance(value, str) and "://" in value:
        shown = mask_url(value)
        return shown, shown != value
    if isinstance(value, dict | list):
        masked = mask_secrets(value)
        return json.dumps(masked, ensure_ascii=False, sort_keys=True), masked != value
    return str(value), False


def shown_settings(settings: Settings) -> list[Shown]:
    """Every field of ``settings``, in declaration order."""
    rows = []
    for name, field in Settings.model_fields.items():
        value = getattr(settings, name)
        default = field.get_default(call_default_factory=True)
        text, masked = masked_text(name, value)
        rows.append(Shown(name, ENV_PREFIX + name.upper(), text, value != default, masked))
    return rows


def derived_settings(settings: Settings) -> list[tuple[str, str]]:
    """(label, masked value) of what the fields resolve to; a broker not configured and not
    started says so rather than failing the page."""
    rows = []
    for attribute, label in DERIVED:
        try:
            text, _masked = masked_text(attribute, getattr(settings, attribute))
        except ConfigError as exc:
            text = str(exc)
        rows.append((label, text))
    return rows


@router.get("/settings")
def settings_page(request: Request, reader: Admin) -> HTMLResponse:
    settings = get_settings(request)
    context = {"settings": shown_settings(settings), "derived": derived_settings(settings)}
    return render(request, "settings.html", context, reader.principal)
