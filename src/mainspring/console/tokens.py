"""API tokens (admins): every user's tokens, creating one for any user, revoking.

Only the token's prefix is ever listed; the secret is in the answer to the creating POST once
(rendered there, not kept in the session, and marked ``no-store``) and cannot be shown again.
Creating and revoking go through ``services.tokens`` as ``/api/v1/tokens`` does: the role is
capped by the owner's, and both are audited.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from mainspring.api.deps import Db
from mainspring.console.deps import MAX_ID, Admin, CheckedForm, Reader, form_text
from mainspring.console.prefs import flash
from mainspring.console.render import render
from mainspring.core.states import Role
from mainspring.errors import NotFoundError, ValidationError
from mainspring.services import tokens as token_service
from mainspring.services.tokens import Caller
from mainspring.services.users import get_user_by_name, list_users

router = APIRouter(include_in_schema=False)

TokenId = Annotated[int, Path(ge=1, le=MAX_ID)]
NO_STORE = {"Cache-Control": "no-store"}


def _caller(reader: Reader) -> Caller:
    return Caller(user_id=reader.principal.user_id, role=reader.principal.role)


def tokens_page(
    request: Request,
    db: Session,
    reader: Reader,
    given: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    created: tuple[str, Any, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """Every token, newest first, with its status; ``created``: (secret, row, owner) shown
    once."""
    rows = token_service.list_tokens(db, _caller(reader))
    listed = [(token, owner, token_service.token_status(token).value) for token, owner in rows]
    context: dict[str, Any] = {
        "tokens": listed,
        "usernames": [u.username for u in list_users(db) if u.is_active],
        "roles": [role.value for role in Role],
        "given": given or {"username": reader.principal.username, "name": "", "role": "",
                           "days": ""},
        "errors": errors or {},
        "created": created,
    }  # fmt: skip
    response = render(request, "tokens.html", context, reader.principal, status_code)
    if created is not None:
        response.headers.update(NO_STORE)
    return response


@router.get("/tokens")
def tokens_list(request: Request, db: Db, reader: Admin) -> HTMLResponse:
    return tokens_page(request, db, reader)


def _days(raw: str) -> int | None:
    if not raw.strip():
        return None
    if not raw.strip().isdigit():
        raise ValidationError("expires_in_days", "must be a whole number of days")
    return int(raw)


@router.post("/tokens")
def token_create(request: Request, db: Db, reader: Admin, form: CheckedForm) -> HTMLResponse:
    """Create a token and show its secret on this answer only."""
    given = {key: form_text(form, key, max_length=200).strip()
             for key in ("username", "name", "role", "days")}  # fmt: skip
    try:
        role = Role(given["role"]) if given["role"] else None
    except ValueError:
        message = reader.gettext("must be one of %(choices)s")
        errors = {"role": message % {"choices": ", ".join(r.value for r in Role)}}
        return tokens_page(request, db, reader, given, errors, status_code=422)
    try:
        if not given["name"]:
            raise ValidationError("name", "is required")
        owner = get_user_by_name(db, given["username"])
        expires_at = token_service.expiry(None, _days(given["days"]))
        secret, token = token_service.create_token(
            db, owner, given["name"], reader.actor,
            caller_role=reader.principal.role, role=role, expires_at=expires_at,
        )  # fmt: skip
    except ValidationError as exc:
        field = "days" if exc.field == "expires_in_days" else exc.field
        errors = {field: reader.gettext(exc.message)}
        return tokens_page(request, db, reader, given, errors, status_code=422)
    except NotFoundError:
        errors = {"username": reader.gettext("no user has this name")}
        return tokens_page(request, db, reader, given, errors, status_code=422)
    return tokens_page(
        request, db, reader, created=(secret, token, owner.username), status_code=201
    )


@router.post("/tokens/{token_id}/revoke")
def token_revoke(
    request: Request, db: Db, reader: Admin, form: CheckedForm, token_id: TokenId
) -> Response:
    """Revoke at once; revoking a revoked token changes nothing."""
    token, owner = token_service.revoke_token(db, token_id, _caller(reader), reader.actor)
    message = reader.gettext("Token %(name)s of %(user)s revoked.")
    flash(request, message % {"name": token.name, "user": owner})
    return RedirectResponse("/tokens", status_code=303)
