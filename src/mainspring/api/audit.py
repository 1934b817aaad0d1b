"""``/api/v1/audit`` (admin): the audit log, newest first; and ``AuditActor`` for routers.

Auditing a change from any router: declare an ``AuditActor`` parameter and record the change
in the request's transaction, so the change and its entry commit or roll back together::

    from mainspring.api.audit import AuditActor
    from mainspring.services.audit import diff, record_as

    @router.post("/{name}/pause")
    def pause(db: Db, name: str, actor: AuditActor) -> JobOut:
        job = get_job_by_name(db, name)
        before = {"enabled": job.enabled}
        set_enabled(db, job, False)
        record_as(db, actor, "pause", "job", job.id, diff(before, {"enabled": job.enabled}))
        return JobOut.model_validate(job)

(better still, the service takes the ``Actor`` and calls ``record_as`` itself, as
``services.users`` and ``services.tokens`` do, so the CLI's changes are audited too).

``AuditActor`` depends on ``current_user``, so it also authenticates the caller (401 without
credentials); combine it with ``require_role`` for the role check. It carries the caller's
user name and client address (the direct peer: ``mainspring web`` ignores proxy headers).
Services take a ``services.audit.Actor`` and never import FastAPI, so the CLI can pass
``Actor.cli()`` to the same functions.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from mainspring.api.auth import CurrentUser, client_address, require_role
from mainspring.api.deps import Db
from mainspring.api.schemas import AuditOut, AuditPage, ErrorOut, RequestErrorOut
from mainspring.core.states import Role
from mainspring.services.audit import (
    Actor,
    AuditFilter,
    decode_cursor,
    encode_cursor,
    list_entries,
)


async def audit_actor(request: Request, principal: CurrentUser) -> Actor:
    """The authenticated caller and their address, for ``services.audit``."""
    return Actor(principal.username, client_address(request))


AuditActor = Annotated[Actor, Depends(audit_actor)]

router = APIRouter(
    prefix="/audit",
    tags=["audit"],
    dependencies=[Depends(require_role(Role.ADMIN))],
    responses={
        401: {"model": ErrorOut},
        403: {"model": ErrorOut},
        422: {"model": RequestErrorOut},
        429: {"model": ErrorOut},
    },
)

FilterText = Query(max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")


@router.get("", response_model=AuditPage)
def audit_page(
    db: Db,
    object_type: Annotated[str | None, FilterText] = None,
    object_id: Annotated[str | None, FilterText] = None,
    actor: Annotated[str | None, FilterText] = None,
    action: Annotated[str | None, FilterText] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=20)] = None,
) -> AuditPage:
    """Entries newest first; follow ``next_cursor`` for older ones (null at the end)."""
    flt = AuditFilter(object_type=object_type, object_id=object_id, actor=actor, action=action)
    before_id = decode_cursor(cursor) if cursor is not None else None
    rows, last_id = list_entries(db, flt, limit=limit, before_id=before_id)
    return AuditPage(
        items=[AuditOut.model_validate(row) for row in rows],
        next_cursor=encode_cursor(last_id) if last_id is not None else None,
    )
