"""Users (admins): the accounts with their roles, creating one with a password, changing a
role, deactivating, reactivating and deleting (confirmed on a page of its own).

Every change goes through ``services.users`` as ``/api/v1/users`` does, so the same rules hold
(an admin cannot deactivate or delete themselves; the last active admin stays) and the change
is audited. A refused change comes back as a message on the page, the form's input kept.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from mainspring.api.deps import Db
from mainspring.console.deps import MAX_ID, Admin, CheckedForm, Reader, form_text
from mainspring.console.i18n import N_
from mainspring.console.prefs import flash
from mainspring.console.render import render
from mainspring.core.states import Role
from mainspring.errors import ConflictError, ValidationError
from mainspring.services import users as user_service
from mainspring.services.users import UserUpdate

router = APIRouter(include_in_schema=False)

UserId = Annotated[int, Path(ge=1, le=MAX_ID)]
ROLES = [role.value for role in Role]


def _role(raw: str) -> Role:
    try:
        return Role(raw)
    except ValueError:
        raise ValidationError("role", f"must be one of {', '.join(ROLES)}") from None


def users_page(
    request: Request,
    db: Session,
    reader: Reader,
    new_user: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """The list and the "new user" form (re-shown with its errors when refused)."""
    context: dict[str, Any] = {
        "users": user_service.list_users(db),
        "roles": ROLES,
        "new_user": new_user or {"username": "", "role": Role.VIEWER.value},
        "errors": errors or {},
        "me": reader.principal.user_id,
    }
    return render(request, "users.html", context, reader.principal, status_code)


@router.get("/users")
def users_list(request: Request, db: Db, reader: Admin) -> HTMLResponse:
    return users_page(request, db, reader)


@router.post("/users")
def user_create(request: Request, db: Db, reader: Admin, form: CheckedForm) -> Response:
    """Add an active user; the password is never shown back, even when the form is refused."""
    given = {"username": form_text(form, "username", max_length=200).strip(),
             "role": form_text(form, "role", max_length=20)}  # fmt: skip
    password = form_text(form, "password", max_length=2000)
    try:
        user = user_service.create_user(
            db, given["username"], password, _role(given["role"]), actor=reader.actor
        )
    except ValidationError as exc:
        errors = {exc.field: reader.gettext(exc.message)}
        return users_page(request, db, reader, given, errors, 422)
    except ConflictError as exc:
        return users_page(request, db, reader, given, {"username": str(exc)}, 409)
    flash(request, reader.gettext("User %(name)s created.") % {"name": user.username})
    return RedirectResponse("/users", status_code=303)


def _change(
    request: Request, db: Session, reader: Reader, user_id: int, update: UserUpdate, done: str
) -> Response:
    """Apply ``update`` through the service; a refusal is a message on the list."""
    user = user_service.get_user(db, user_id)
    try:
        user_service.update_user(
            db, user, update, reader.actor, acting_user_id=reader.principal.user_id
        )
    except (ConflictError, ValidationError) as exc:
        flash(request, str(exc), "error")
    else:
        flash(request, reader.gettext(done) % {"name": user.username})
    return RedirectResponse("/users", status_code=303)


@router.post("/users/{user_id}/role")
def user_role(
    request: Request, db: Db, reader: Admin, form: CheckedForm, user_id: UserId
) -> Response:
    role = _role(form_text(form, "role", max_length=20))
    update = UserUpdate(role=role)
    return _change(request, db, reader, user_id, update, N_("Role of %(name)s changed."))


@router.post("/users/{user_id}/deactivate")
def user_deactivate(
    request: Request, db: Db, reader: Admin, form: CheckedForm, user_id: UserId
) -> Response:
    """Refuse the user's logins and tokens from now on; the account and history stay."""
    update = UserUpdate(is_active=False)
    return _change(request, db, reader, user_id, update, N_("User %(name)s deactivated."))


@router.post("/users/{user_id}/activate")
def user_activate(
    request: Request, db: Db, reader: Admin, form: CheckedForm, user_id: UserId
) -> Response:
    update = UserUpdate(is_active=True)
    return _change(request, db, reader, user_id, update, N_("User %(name)s reactivated."))


@router.get("/users/{user_id}/delete")
def user_delete_confirm(request: Request, db: Db, reader: Admin, user_id: UserId) -> HTMLResponse:
    user = user_service.get_user(db, user_id)
    return render(request, "user_delete.html", {"target": user}, reader.principal)


@router.post("/users/{user_id}/delete")
def user_delete(
    request: Request, db: Db, reader: Admin, form: CheckedForm, user_id: UserId
) -> Response:
    """Delete the user and their tokens; the audit log keeps what the account was."""
    user = user_service.get_user(db, user_id)
    name = user.username
    try:
        user_service.delete_user(db, user, reader.actor, acting_user_id=reader.principal.user_id)
    except ConflictError as exc:
        flash(request, str(exc), "error")
    else:
        flash(request, reader.gettext("User %(name)s deleted with their tokens.") % {"name": name})
    return RedirectResponse("/users", status_code=303)
