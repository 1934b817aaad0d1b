"""``/api/v1/tokens``: API tokens. Anyone logged in manages their own; admins everyone's.

The secret is in the creation answer only. Another user's token is a 404 to a non-admin,
so token ids do not reveal whose tokens exist.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path

from mainspring.api.audit import AuditActor
from mainspring.api.auth import CurrentUser
from mainspring.api.deps import Db
from mainspring.api.schemas import (
    API_ERRORS,
    ErrorOut,
    TokenCreate,
    TokenCreated,
    TokenList,
    TokenOut,
)
from mainspring.db.models import ApiToken
from mainspring.services import tokens as token_service
from mainspring.services.auth import Principal
from mainspring.services.tokens import Caller
from mainspring.services.users import get_user, get_user_by_name

router = APIRouter(
    prefix="/tokens",
    tags=["tokens"],
    # 400: a body that is not JSON at all; 429: too many wrong Basic passwords.
    responses=API_ERRORS,
)

TokenId = Annotated[int, Path(ge=1, le=2**63 - 1)]


def _caller(principal: Principal) -> Caller:
    return Caller(user_id=principal.user_id, role=principal.role)


def _out(token: ApiToken, username: str) -> TokenOut:
    return TokenOut(
        id=token.id,
        name=token.name,
        user_id=token.user_id,
        username=username,
        role=token.role,
        prefix=token.prefix,
        status=token_service.token_status(token).value,
        created_at=token.created_at,
        last_used_at=token.last_used_at,
        expires_at=token.expires_at,
        revoked_at=token.revoked_at,
    )


@router.get("", response_model=TokenList)
def tokens_list(db: Db, principal: CurrentUser) -> TokenList:
    """Newest first; admins see every user's tokens, others their own."""
    rows = token_service.list_tokens(db, _caller(principal))
    return TokenList(items=[_out(token, owner) for token, owner in rows])


@router.post(
    "",
    response_model=TokenCreated,
    status_code=201,
    responses={403: {"model": ErrorOut}, 404: {"model": ErrorOut}},
)
def token_create(
    db: Db, body: TokenCreate, principal: CurrentUser, actor: AuditActor
) -> TokenCreated:
    """Create a token; the answer's ``secret`` is shown this once and never again."""
    if body.username is not None and body.username != principal.username:
        if not _caller(principal).is_admin:
            raise HTTPException(403, "only admins create tokens for other users")
        owner = get_user_by_name(db, body.username)
    else:
        owner = get_user(db, principal.user_id)
    expires_at = token_service.expiry(body.expires_at, body.expires_in_days)
    secret, token = token_service.create_token(
        db,
        owner,
        body.name,
        actor,
        caller_role=principal.role,
        role=body.role,
        expires_at=expires_at,
    )
    return TokenCreated(**_out(token, owner.username).model_dump(), secret=secret)


@router.post("/{token_id}/revoke", response_model=TokenOut, responses={404: {"model": ErrorOut}})
def token_revoke(db: Db, token_id: TokenId, principal: CurrentUser, actor: AuditActor) -> TokenOut:
    """Revoke at once; revoking a revoked token changes nothing."""
    token, owner = token_service.revoke_token(db, token_id, _caller(principal), actor)
    return _out(token, owner)
