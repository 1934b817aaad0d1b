"""The console's languages: gettext catalogs (Babel) and choosing one per request.

The catalogs are ``locale/<code>/LC_MESSAGES/messages.po``. They are compiled in memory on
first use (``babel.messages``), so a fresh clone or an editable install needs no build step
and a compiled ``.mo`` can never be older than its ``.po``. Updating them is described in
``docs/console.md`` (``pybabel extract`` with ``babel.cfg``, then ``pybabel update``).

The language is the user's own setting (``users.language``), else the best match of the
browser's ``Accept-Language``, else English.
"""

from __future__ import annotations

import gettext
import logging
from dataclasses import dataclass
from functools import lru_cache
from io import BytesIO
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

log = logging.getLogger(__name__)

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DOMAIN = "messages"
DEFAULT_LANGUAGE = "en"
# Our code -> (BCP 47 tag for <html lang> and for users.language, the language's own name).
LANGUAGES: dict[str, tuple[str, str]] = {
    "en": ("en", "English"),
    "zh_CN": ("zh-CN", "简体中文"),
}
_TRADITIONAL = frozenset({"hant", "tw", "hk", "mo"})
MAX_ACCEPT_LANGUAGE = 40  # entries read from the header; the rest are ignored


@lru_cache(maxsize=len(LANGUAGES))
def translations(code: str) -> gettext.NullTranslations:
    """The catalog of ``code``, compiled from its ``.po`` once per process."""
    if code == DEFAULT_LANGUAGE or code not in LANGUAGES:
        return gettext.NullTranslations()
    po_file = LOCALE_DIR / code / "LC_MESSAGES" / f"{DOMAIN}.po"
    try:
        with po_file.open("rb") as source:
            catalog = read_po(source, locale=code, domain=DOMAIN)
    except OSError:  # an install made without the catalogs: English rather than an error
        log.warning("console catalog %s is missing; showing English", po_file)
        return gettext.NullTranslations()
    compiled = BytesIO()
    write_mo(compiled, catalog)  # fuzzy entries are left out, as msgfmt does
    compiled.seek(0)
    return Translations(fp=compiled, domain=DOMAIN)


def match_language(tag: str | None) -> str | None:
    """Our code for a language tag (``zh-CN``, ``zh_Hans``, ``en-GB``…), or None.

    Traditional Chinese (``zh-TW``, ``zh-Hant``…) is not offered, so it does not match.
    """
    if not tag:
        return None
    parts = tag.strip().replace("_", "-").lower().split("-")
    if parts[0] == "en":
        return "en"
    if parts[0] == "zh" and not _TRADITIONAL.intersection(parts[1:]):
        return "zh_CN"
    return None


def accepted_languages(header: str | None) -> list[str]:
    """The tags of an ``Accept-Language`` header, most preferred first (``q=0`` dropped)."""
    ranked: list[tuple[float, int, str]] = []
    for index, item in enumerate((header or "").split(",")[:MAX_ACCEPT_LANGUAGE]):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        if tag and quality > 0:
            ranked.append((-quality, index, tag.strip()))
    return [tag for _q, _i, tag in sorted(ranked)]


def negotiate(user_language: str | None, accept_language: str | None) -> str:
    """The language to show: the user's setting, else the browser's best supported one."""
    chosen = match_language(user_language)
    if chosen is not None:
        return chosen
    for tag in accepted_languages(accept_language):
        chosen = match_language(tag)
        if chosen is not None:
            return chosen
    return DEFAULT_LANGUAGE


@dataclass(frozen=True)
class Lang:
    """One request's language: its code, its tag and its catalog."""

    code: str

    @property
    def tag(self) -> str:
        return LANGUAGES[self.code][0]

    def gettext(self, message: str) -> str:
        return translations(self.code).gettext(message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return translations(self.code).ngettext(singular, plural, n)


def language_choices() -> list[tuple[str, str]]:
    """(tag, own name) of each language, for the switcher."""
    return [(tag, name) for tag, name in LANGUAGES.values()]


def N_(message: str) -> str:
    """Mark a string for extraction; it is translated where it is shown."""
    return message


# Words shown from values rather than from templates: roles, run states, trigger sources,
# policies, and the titles and messages of ``api.errors``' pages. Shown with the ``tr``
# filter, which translates without %-formatting (the values may hold any text).
_VALUE_MESSAGES = (
    N_("admin"), N_("operator"), N_("viewer"),
    N_("SCHEDULED"), N_("SENT"), N_("RECEIVED"), N_("STARTED"), N_("RETRY"), N_("SUCCESS"),
    N_("FAILURE"), N_("REVOKED"), N_("LOST"), N_("EXPIRED"), N_("SKIPPED"),
    N_("schedule"), N_("api"), N_("manual"), N_("retry"), N_("workflow"), N_("dependency"),
    N_("external"), N_("skip"), N_("run_once"), N_("run_all"), N_("allow"), N_("queue_one"),
    N_("replace"), N_("cron"), N_("interval"), N_("once"),
    N_("Cannot show this page"), N_("Form expired or forged"), N_("Invalid request"),
    N_(
        "The form was missing its security token or it did not match your session. "
        "Go back, reload the page and submit it again."
    ),
)  # fmt: skip
# Values of the users, tokens, alerts, workflow and version pages, shown with ``tr``.
_MORE_VALUE_MESSAGES = (
    N_("active"), N_("expired"), N_("revoked"), N_("pending"), N_("sent"), N_("failed"),
    N_("chain"), N_("group"), N_("chord"), N_("step"), N_("PENDING"),
    N_("create"), N_("update"), N_("rollback"), N_("baseline"), N_("pause"), N_("resume"),
    N_("delete"),
)  # fmt: skip
