"""A reader's language and time zone for one request, and messages kept for the next page.

The console's user dependency (``console.deps``) stores the logged-in user's choices on the
request; any page rendered without them (the login form, an error before login) falls back
to the browser's ``Accept-Language`` and the server's ``timezone`` setting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fastapi import Request

from mainspring.console.i18n import Lang, negotiate

_STATE_KEY = "console_prefs"
_FLASH_KEY = "flash"
MAX_FLASHES = 5
FlashLevel = Literal["ok", "error"]


@dataclass(frozen=True)
class Prefs:
    language: str  # one of ``i18n.LANGUAGES``
    timezone: str  # an IANA zone name


def set_prefs(request: Request, prefs: Prefs) -> None:
    setattr(request.state, _STATE_KEY, prefs)


def request_prefs(request: Request) -> Prefs:
    """The prefs the user dependency stored, else the browser's language and server's zone."""
    prefs = getattr(request.state, _STATE_KEY, None)
    if isinstance(prefs, Prefs):
        return prefs
    timezone: str = request.app.state.settings.timezone
    return Prefs(negotiate(None, request.headers.get("accept-language")), timezone)


def request_lang(request: Request) -> Lang:
    return Lang(request_prefs(request).language)


def flash(request: Request, text: str, level: FlashLevel = "ok") -> None:
    """Keep a (translated) message in the session for the next page shown."""
    kept = request.session.get(_FLASH_KEY)
    messages = kept if isinstance(kept, list) else []
    request.session[_FLASH_KEY] = [*messages, [level, text]][-MAX_FLASHES:]


def take_flashes(request: Request) -> list[tuple[str, str]]:
    kept = request.session.pop(_FLASH_KEY, None)
    if not isinstance(kept, list):
        return []
    return [(str(item[0]), str(item[1])) for item in kept if isinstance(item, list | tuple)]
