"""The audit log (admins): who changed what, when and from where, newest first, filtered by
object, actor and action, in pages that continue before the last entry shown (keyset on the
entry id, which only grows), as ``services.audit.list_entries`` reads it."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from mainspring.api.deps import Db
from mainspring.console.deps import Admin
from mainspring.console.render import render
from mainspring.errors import ValidationError
from mainspring.services.audit import AuditFilter, decode_cursor, encode_cursor, list_entries

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
FilterText = Annotated[str, Query(max_length=200)]
FILTER_NAMES = ("object_type", "object_id", "actor", "action")


@router.get("/audit")
def audit_page(
    request: Request,
    db: Db,
    reader: Admin,
    object_type: FilterText = "",
    object_id: FilterText = "",
    actor: FilterText = "",
    action: FilterText = "",
    cursor: Annotated[str, Query(max_length=40)] = "",
) -> HTMLResponse:
    """One page of entries; "older" carries the filters and the cursor."""
    values = (object_type, object_id, actor, action)
    given = {name: v.strip() for name, v in zip(FILTER_NAMES, values, strict=True)}
    flt = AuditFilter(**{name: v or None for name, v in given.items()})
    errors: dict[str, str] = {}
    entries: list[Any] = []
    next_id = None
    try:
        before_id = decode_cursor(cursor) if cursor else None
        rows, next_id = list_entries(db, flt, PAGE_SIZE, before_id)
        entries = list(rows)
    except ValidationError as exc:
        errors[exc.field] = reader.gettext(exc.message)
    filters = {k: v for k, v in given.items() if v}
    context: dict[str, Any] = {
        "entries": entries,
        "filters": given,
        "errors": errors,
        "first_url": "/audit" + ("?" + urlencode(filters) if filters else ""),
        "next_url": "/audit?" + urlencode({**filters, "cursor": encode_cursor(next_id)})
        if next_id is not None
        else None,
        "is_first_page": not cursor,
    }
    return render(request, "audit.html", context, reader.principal, 422 if errors else 200)
