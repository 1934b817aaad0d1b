"""``/api/v1/alerts``: channels (admin: they hold secrets), rules (operator), sent alerts.

Anyone logged in reads; channel configs are listed with secrets masked. Every change is
audited. ``POST /alerts/channels/{id}/test`` sends a test alert at once and answers whether
the channel took it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from mainspring.alerts import store
from mainspring.alerts.config import ChannelKind, RuleKind
from mainspring.alerts.delivery import COMMANDS_OFF, send_test
from mainspring.api.audit import AuditActor
from mainspring.api.auth import Admin, CurrentUser, Operator
from mainspring.api.celery_dep import Ctx, ReleasedAdmin
from mainspring.api.deps import Db, get_settings
from mainspring.api.schemas import API_ERRORS, ErrorOut
from mainspring.db.models import Alert, AlertChannel, AlertDelivery, AlertRule
from mainspring.errors import ValidationError
from mainspring.services.audit import record_as
from mainspring.settings import Settings

router = APIRouter(
    prefix="/alerts",
    tags=["alerts"],
    responses={
        **API_ERRORS,
        403: {"model": ErrorOut},
        404: {"model": ErrorOut},
        409: {"model": ErrorOut},
    },
)

ServerSettings = Annotated[Settings, Depends(get_settings)]
ObjectId = Annotated[int, Path(ge=1, le=2**63 - 1)]
Name = Annotated[str, Field(min_length=1, max_length=150, pattern=r"^[^\x00-\x1f\x7f]+$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChannelCreate(_Strict):
    name: Name
    kind: ChannelKind
    config: dict[str, Any]


class ChannelPatch(_Strict):
    name: Name | None = None
    config: dict[str, Any] | None = None
    enabled: bool | None = None


class ChannelOut(_Strict):
    id: int
    name: str
    kind: str
    enabled: bool
    config: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class ChannelList(_Strict):
    items: list[ChannelOut]


class TestResult(_Strict):
    ok: bool
    error: str | None


class RuleCreate(_Strict):
    name: Name
    kind: RuleKind
    channel_ids: list[Annotated[int, Field(ge=1)]] = Field(max_length=20)
    job_id: int | None = Field(default=None, ge=1)
    tag: str | None = Field(default=None, min_length=1, max_length=100)
    params: dict[str, Any] = Field(default_factory=dict)
    cooldown_s: int = Field(default=600, ge=0, le=7 * 86400)
    enabled: bool = True


class RulePatch(_Strict):
    name: Name | None = None
    channel_ids: list[Annotated[int, Field(ge=1)]] | None = Field(default=None, max_length=20)
    job_id: int | None = Field(default=None, ge=1)
    tag: str | None = Field(default=None, min_length=1, max_length=100)
    params: dict[str, Any] | None = None
    cooldown_s: int | None = Field(default=None, ge=0, le=7 * 86400)
    enabled: bool | None = None


class RuleOut(_Strict):
    model_config = ConfigDict(from_attributes=True, extra="forbid")

    id: int
    name: str
    kind: str
    job_id: int | None
    tag: str | None
    params: dict[str, Any]
    channel_ids: list[int]
    cooldown_s: int
    enabled: bool
    created_at: datetime
    updated_at: datetime


class RuleList(_Strict):
    items: list[RuleOut]


class DeliveryOut(_Strict):
    model_config = ConfigDict(from_attributes=True, extra="forbid")

    channel_id: int | None
    channel_name: str
    state: str
    attempts: int
    last_error: str | None
    sent_at: datetime | None
    next_attempt_at: datetime | None


class AlertOut(_Strict):
    id: int
    rule_id: int | None
    kind: str
    subject: str
    run_id: str | None
    job_id: int | None
    suppressed: int
    created_at: datetime
    payload: dict[str, Any]
    deliveries: list[DeliveryOut]


class AlertPage(_Strict):
    items: list[AlertOut]
    next_cursor: str | None


def _channel_out(ch: AlertChannel) -> ChannelOut:
    return ChannelOut(
        id=ch.id,
        name=ch.name,
        kind=ch.kind,
        enabled=ch.enabled,
        config=store.masked_config(ch.config),
        created_at=ch.created_at,
        updated_at=ch.updated_at,
    )


def _alert_out(alert: Alert, deliveries: list[AlertDelivery]) -> AlertOut:
    return AlertOut(
        id=alert.id,
        rule_id=alert.rule_id,
        kind=alert.kind,
        subject=alert.subject,
        run_id=alert.run_id,
        job_id=alert.job_id,
        suppressed=alert.suppressed,
        created_at=alert.created_at,
        payload=alert.payload,
        deliveries=[DeliveryOut.model_validate(d) for d in deliveries],
    )


@router.get("/channels", response_model=ChannelList)
def channels_list(db: Db, _user: CurrentUser) -> ChannelList:
    """Every channel, by name, secrets masked."""
    return ChannelList(items=[_channel_out(c) for c in store.list_channels(db)])


@router.post("/channels", response_model=ChannelOut, status_code=201)
def channel_create(
    db: Db, body: ChannelCreate, _admin: Admin, actor: AuditActor, settings: ServerSettings
) -> ChannelOut:
    if body.kind == ChannelKind.COMMAND and not settings.alerts_allow_commands:
        raise ValidationError("kind", COMMANDS_OFF)
    return _channel_out(store.create_channel(db, actor, body.name, body.kind, body.config))


@router.get("/channels/{channel_id}", response_model=ChannelOut)
def channel_detail(db: Db, channel_id: ObjectId, _user: CurrentUser) -> ChannelOut:
    return _channel_out(store.get_channel(db, channel_id))


@router.patch("/channels/{channel_id}", response_model=ChannelOut)
def channel_update(
    db: Db, channel_id: ObjectId, body: ChannelPatch, _admin: Admin, actor: AuditActor
) -> ChannelOut:
    """Change the fields sent; a secret sent back as ``***`` keeps its stored value."""
    change = store.ChannelChange(name=body.name, config=body.config, enabled=body.enabled)
    return _channel_out(store.update_channel(db, actor, store.get_channel(db, channel_id), change))


@router.delete("/channels/{channel_id}", status_code=204, response_class=Response)
def channel_delete(db: Db, channel_id: ObjectId, _admin: Admin, actor: AuditActor) -> Response:
    """Delete a channel; rules stop sending to it, past deliveries keep its name."""
    store.delete_channel(db, actor, store.get_channel(db, channel_id))
    return Response(status_code=204)


@router.post("/channels/{channel_id}/test", response_model=TestResult)
def channel_test(
    ctx: Ctx,
    channel_id: ObjectId,
    _admin: ReleasedAdmin,
    actor: AuditActor,
    settings: ServerSettings,
) -> TestResult:
    """Send a test alert now (no transaction is held while the channel answers)."""
    with ctx.session() as session:
        channel = store.get_channel(session, channel_id)
        session.expunge(channel)
    error = send_test(channel, settings.alerts_allow_commands)
    with ctx.session() as session:
        result = {"ok": error is None, "error": error}
        record_as(session, actor, "test", "alert_channel", channel_id, {"after": result})
    return TestResult(ok=error is None, error=error)


@router.get("/rules", response_model=RuleList)
def rules_list(db: Db, _user: CurrentUser) -> RuleList:
    return RuleList(items=[RuleOut.model_validate(r) for r in store.list_rules(db)])


@router.post("/rules", response_model=RuleOut, status_code=201)
def rule_create(db: Db, body: RuleCreate, _op: Operator, actor: AuditActor) -> RuleOut:
    spec = store.RuleSpec(**body.model_dump())
    return RuleOut.model_validate(store.create_rule(db, actor, spec))


@router.get("/rules/{rule_id}", response_model=RuleOut)
def rule_detail(db: Db, rule_id: ObjectId, _user: CurrentUser) -> RuleOut:
    return RuleOut.model_validate(store.get_rule(db, rule_id))


@router.patch("/rules/{rule_id}", response_model=RuleOut)
def rule_update(
    db: Db, rule_id: ObjectId, body: RulePatch, _op: Operator, actor: AuditActor
) -> RuleOut:
    """Change the fields sent (``job_id``/``tag`` null clears the scope)."""
    rule: AlertRule = store.get_rule(db, rule_id)
    changes = {k: getattr(body, k) for k in body.model_fields_set}
    return RuleOut.model_validate(store.update_rule(db, actor, rule, changes))


@router.delete("/rules/{rule_id}", status_code=204, response_class=Response)
def rule_delete(db: Db, rule_id: ObjectId, _op: Operator, actor: AuditActor) -> Response:
    store.delete_rule(db, actor, store.get_rule(db, rule_id))
    return Response(status_code=204)


@router.get("", response_model=AlertPage)
def alerts_page(
    db: Db,
    _user: CurrentUser,
    rule_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> AlertPage:
    """Alerts newest first, each with its deliveries; follow ``next_cursor`` for older ones."""
    rows, last = store.list_alerts(db, limit=limit, before_id=cursor, rule_id=rule_id)
    return AlertPage(
        items=[_alert_out(a, d) for a, d in rows],
        next_cursor=str(last) if last is not None else None,
    )
