"""Alerts: the rules (what raises an alert, where it is sent) and the alerts raised, newest
first with their deliveries, in pages continuing before the last one shown; operators add
and delete rules. Anyone logged in reads, as with ``/api/v1/alerts``.

Reading and changing go through ``alerts.store`` like the API, so changes are audited and a
rule is checked the same way (its channels exist, a system rule has no job or tag). Channels
hold secrets and are managed by admins through the API; here they are named only.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from mainspring.alerts import store
from mainspring.alerts.config import RUN_RULES, RuleKind
from mainspring.api.deps import Db
from mainspring.console.deps import MAX_ID, CheckedForm, CurrentReader, Operator, Reader, form_text
from mainspring.console.prefs import flash
from mainspring.console.render import render
from mainspring.errors import ConflictError, ValidationError

router = APIRouter(include_in_schema=False)

ALERTS_PER_PAGE = 50
RuleId = Annotated[int, Path(ge=1, le=MAX_ID)]
FORM_FIELDS = ("name", "kind", "job_id", "tag", "cooldown_s")


def alerts_page(
    request: Request,
    db: Session,
    reader: Reader,
    before: int | None = None,
    given: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    rows, last = store.list_alerts(db, limit=ALERTS_PER_PAGE, before_id=before)
    channels = store.list_channels(db)
    context: dict[str, Any] = {
        "rules": store.list_rules(db),
        "channels": channels,
        "channel_names": {c.id: c.name for c in channels},
        "alerts": rows,
        "next_url": f"/alerts?before={last}" if last is not None else None,
        "is_first_page": before is None,
        "kinds": [k.value for k in RuleKind],
        "run_kinds": sorted(k.value for k in RUN_RULES),
        "given": given or {"name": "", "kind": RuleKind.RUN_FAILED.value, "job_id": "",
                           "tag": "", "cooldown_s": "600", "channel_ids": []},
        "errors": errors or {},
    }  # fmt: skip
    return render(request, "alerts.html", context, reader.principal, status_code)


@router.get("/alerts")
def alerts_list(
    request: Request,
    db: Db,
    reader: CurrentReader,
    before: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> HTMLResponse:
    return alerts_page(request, db, reader, before)


def _number(raw: str, field: str) -> int | None:
    if not raw:
        return None
    if not raw.isdigit() or int(raw) > MAX_ID:
        raise ValidationError(field, "must be a whole number")
    return int(raw)


def _rule_spec(given: dict[str, Any]) -> store.RuleSpec:
    """The rule the form describes (the store checks the rest)."""
    try:
        kind = RuleKind(given["kind"])
    except ValueError:
        raise ValidationError("kind", "must be one of the listed kinds") from None
    if not given["name"]:
        raise ValidationError("name", "is required")
    channel_ids = [_number(v, "channel_ids") for v in given["channel_ids"]]
    return store.RuleSpec(
        name=given["name"],
        kind=kind,
        channel_ids=[c for c in channel_ids if c is not None],
        job_id=_number(given["job_id"], "job_id"),
        tag=given["tag"] or None,
        cooldown_s=_number(given["cooldown_s"], "cooldown_s") or 0,
    )


@router.post("/alerts/rules")
def rule_create(request: Request, db: Db, reader: Operator, form: CheckedForm) -> Response:
    """Add a rule; a refused one is shown again with the message next to its field."""
    given: dict[str, Any] = {k: form_text(form, k, max_length=200).strip() for k in FORM_FIELDS}
    given["channel_ids"] = [v for v in form.getlist("channel_ids") if isinstance(v, str)][:20]
    try:
        rule = store.create_rule(db, reader.actor, _rule_spec(given))
    except ValidationError as exc:
        field = exc.field if exc.field in (*FORM_FIELDS, "channel_ids") else "rule"
        errors = {field: reader.gettext(exc.message)}
        return alerts_page(request, db, reader, given=given, errors=errors, status_code=422)
    except ConflictError as exc:
        errors = {"name": str(exc)}
        return alerts_page(request, db, reader, given=given, errors=errors, status_code=409)
    flash(request, reader.gettext("Alert rule %(name)s created.") % {"name": rule.name})
    return RedirectResponse("/alerts", status_code=303)


@router.post("/alerts/rules/{rule_id}/delete")
def rule_delete(
    request: Request, db: Db, reader: Operator, form: CheckedForm, rule_id: RuleId
) -> Response:
    """Delete a rule; the alerts it raised stay listed."""
    rule = store.get_rule(db, rule_id)
    name = rule.name
    store.delete_rule(db, reader.actor, rule)
    flash(request, reader.gettext("Alert rule %(name)s deleted.") % {"name": name})
    return RedirectResponse("/alerts", status_code=303)
