"""``/api/v1/users`` (admin) and ``/api/v1/me`` (anyone logged in): accounts and passwords.

Changes are audited by the services with the caller's name and address. Deleting or
deactivating yourself, and removing the last active admin, are 409s.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response

from mainspring.api.audit import AuditActor
from mainspring.api.auth import Admin, CurrentUser, login_limiter, too_many_attempts
from mainspring.api.deps import Db
from mainspring.api.schemas import (
    API_ERRORS,
    ErrorOut,
    MeOut,
    PasswordChange,
    UserCreate,
    UserList,
    UserOut,
    UserPatch,
)
from mainspring.services import users as user_service
from mainspring.services.ratelimit import TooManyAttempts
from mainspring.services.users import Keep, UserUpdate

router = APIRouter(
    tags=["users"],
    # 400: a body that is not JSON at all; 429: too many wrong Basic passwords.
    responses=API_ERRORS,
)

UserId = Annotated[int, Path(ge=1, le=2**63 - 1)]
Responses = dict[int | str, dict[str, Any]]
_ADMIN_ONLY: Responses = {403: {"model": ErrorOut}}
_ONE_USER: Responses = {403: {"model": ErrorOut}, 404: {"model": ErrorOut}}


@router.get("/users", response_model=UserList, responses=_ADMIN_ONLY)
def users_list(db: Db, _admin: Admin) -> UserList:
    """Every user, by name."""
    return UserList(items=[UserOut.model_validate(u) for u in user_service.list_users(db)])


@router.post(
    "/users",
    response_model=UserOut,
    status_code=201,
    responses={**_ADMIN_ONLY, 409: {"model": ErrorOut}},
)
def user_create(db: Db, body: UserCreate, _admin: Admin, actor: AuditActor) -> UserOut:
    user = user_service.create_user(
        db,
        body.username,
        body.password,
        body.role,
        actor=actor,
        language=body.language,
        timezone=body.timezone,
    )
    return UserOut.model_validate(user)


@router.get("/users/{user_id}", response_model=UserOut, responses=_ONE_USER)
def user_detail(db: Db, user_id: UserId, _admin: Admin) -> UserOut:
    return UserOut.model_validate(user_service.get_user(db, user_id))


@router.patch(
    "/users/{user_id}",
    response_model=UserOut,
    responses={**_ONE_USER, 409: {"model": ErrorOut}},
)
def user_update(
    db: Db, user_id: UserId, body: UserPatch, admin: Admin, actor: AuditActor
) -> UserOut:
    """Change only the fields sent; the last active admin cannot be demoted or deactivated."""
    sent = body.model_fields_set
    update = UserUpdate(
        role=body.role,
        is_active=body.active,
        password=body.password,
        language=body.language if "language" in sent else Keep.KEEP,
        timezone=body.timezone if "timezone" in sent else Keep.KEEP,
    )
    user = user_service.get_user(db, user_id)
    user_service.update_user(db, user, update, actor, acting_user_id=admin.user_id)
    return UserOut.model_validate(user)


@router.delete(
    "/users/{user_id}",
    status_code=204,
    response_class=Response,
    responses={**_ONE_USER, 409: {"model": ErrorOut}},
)
def user_delete(db: Db, user_id: UserId, admin: Admin, actor: AuditActor) -> Response:
    """Delete a user and their tokens; not yourself, not the last active admin."""
    user = user_service.get_user(db, user_id)
    user_service.delete_user(db, user, actor, acting_user_id=admin.user_id)
    return Response(status_code=204)


@router.get("/me", response_model=MeOut)
def me(db: Db, principal: CurrentUser) -> MeOut:
    """Who is calling, and with which effective role (a token may lower it)."""
    user = user_service.get_user(db, principal.user_id)
    return MeOut.model_validate(
        {
            **UserOut.model_validate(user).model_dump(),
            "auth_method": principal.method.value,
            "effective_role": principal.role,
        }
    )


@router.post(
    "/me/password",
    status_code=204,
    response_class=Response,
)
def me_password(
    request: Request, db: Db, body: PasswordChange, principal: CurrentUser, actor: AuditActor
) -> Response:
    """Change your own password. Wrong current passwords count toward the login limit."""
    user = user_service.get_user(db, principal.user_id)
    try:
        user_service.change_own_password(
            db,
            user,
            body.current_password,
            body.new_password,
            actor,
            limiter=login_limiter(request),
        )
    except TooManyAttempts as exc:
        raise too_many_attempts(exc) from None
    return Response(status_code=204)
