"""Who is reading the console, what they may do, and checked forms.

``Reader``: any logged-in user (anonymous readers are sent to the login page), with their
language and time zone stored for rendering. ``Operator``: an operator or admin; a viewer
gets a 403 page even for a hand-made POST. ``CheckedForm``: the posted form, refused with a
403 page unless it carries the session's CSRF token.

Routes that open their own short transactions (the run actions, which publish to the broker)
use the ``Released*`` variants: the request's transaction is committed first, because on
SQLite it holds the write lock (see ``api.celery_dep``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Request
from starlette.datastructures import FormData

from mainspring.api.auth import CSRF_FIELD, ConsoleUser, client_address, require_csrf
from mainspring.api.deps import Db, get_settings
from mainspring.console.i18n import N_, Lang, negotiate
from mainspring.console.prefs import Prefs, set_prefs
from mainspring.core.states import Role
from mainspring.errors import NotFoundError
from mainspring.services.audit import Actor
from mainspring.services.auth import Principal
from mainspring.services.users import get_user

MAX_ID = 2**63 - 1
JobId = Annotated[int, Path(ge=1, le=MAX_ID)]


@dataclass(frozen=True)
class Reader:
    """The logged-in user of one console request."""

    principal: Principal
    prefs: Prefs
    actor: Actor

    @property
    def lang(self) -> Lang:
        return Lang(self.prefs.language)

    @property
    def can_operate(self) -> bool:
        return self.principal.allows(Role.OPERATOR)

    def gettext(self, message: str) -> str:
        return self.lang.gettext(message)


def console_reader(request: Request, db: Db, principal: ConsoleUser) -> Reader:
    """The user with their language (setting, else browser) and zone (setting, else server)."""
    try:
        user = get_user(db, principal.user_id)
        language, timezone = user.language, user.timezone
    except NotFoundError:  # deleted since the session check, a moment ago
        language = timezone = None
    prefs = Prefs(
        negotiate(language, request.headers.get("accept-language")),
        timezone or get_settings(request).timezone,
    )
    set_prefs(request, prefs)
    return Reader(principal, prefs, Actor(principal.username, client_address(request)))


CurrentReader = Annotated[Reader, Depends(console_reader)]


def console_operator(reader: CurrentReader) -> Reader:
    """An operator or admin; anyone else is refused, whatever the page showed them."""
    if not reader.can_operate:
        message = reader.gettext("This needs the operator role; you are %(role)s.")
        raise HTTPException(status_code=403, detail=message % {"role": reader.principal.role})
    return reader


async def checked_form(request: Request) -> FormData:
    """The posted form, once its CSRF token matched the session's (else a 403 page)."""
    form = await request.form()
    token = form.get(CSRF_FIELD)
    require_csrf(request, token if isinstance(token, str) else None)
    return form


def console_admin(reader: CurrentReader) -> Reader:
    """An admin; operators and viewers are refused (403), whatever the page showed them."""
    if not reader.principal.allows(Role.ADMIN):
        message = reader.gettext("This needs the admin role; you are %(role)s.")
        raise HTTPException(status_code=403, detail=message % {"role": reader.principal.role})
    return reader


def released_admin(reader: Annotated[Reader, Depends(console_admin)], db: Db) -> Reader:
    db.commit()
    return reader


def released_operator(reader: Annotated[Reader, Depends(console_operator)], db: Db) -> Reader:
    db.commit()
    return reader


Operator = Annotated[Reader, Depends(console_operator)]
ReleasedOperator = Annotated[Reader, Depends(released_operator)]
Admin = Annotated[Reader, Depends(console_admin)]
ReleasedAdmin = Annotated[Reader, Depends(released_admin)]
CheckedForm = Annotated[FormData, Depends(checked_form)]


def form_text(form: FormData, name: str, default: str = "", max_length: int = 100_000) -> str:
    """One text field of a form (files and overlong values count as absent)."""
    value = form.get(name)
    if not isinstance(value, str) or len(value) > max_length:
        return default
    return value


def json_field(raw: str, kind: type, reader: Reader) -> tuple[Any, str | None]:
    """A JSON array (``kind`` list) or object (dict) typed into a form, or why it is not one.
    An empty field is an empty array or object."""
    try:
        value = json.loads(raw or ("[]" if kind is list else "{}"))
    except json.JSONDecodeError:
        return None, reader.gettext(N_("is not valid JSON"))
    if not isinstance(value, kind):
        message = N_("must be a JSON array") if kind is list else N_("must be a JSON object")
        return None, reader.gettext(message)
    return value, None
