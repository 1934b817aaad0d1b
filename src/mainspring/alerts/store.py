"""Channels and rules: create, change, delete (each audited), and the alerts list.

Secrets in a channel's config never leave masked: ``masked_config`` is what callers show,
and a change that sends the mask back (``"***"``) keeps the stored secret, so a form that
round-trips a listed channel does not wipe its password.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mainspring.alerts.config import (
    RUN_RULES,
    ChannelKind,
    RuleKind,
    parse_config,
    parse_params,
)
from mainspring.db.models import Alert, AlertChannel, AlertDelivery, AlertRule, Job
from mainspring.errors import ConflictError, NotFoundError, ValidationError
from mainspring.services.audit import MASK, Actor, diff, is_secret_key, mask_secrets, record_as
from mainspring.services.clock import utcnow


def mask_url(url: str) -> str:
    """``url`` with a password and every query value masked: webhook URLs often carry their
    token there (DingTalk's ``?access_token=``, WeCom's ``?key=``)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", f":{MASK}@", 1)
    query = urlencode([(k, MASK) for k, _v in parse_qsl(parts.query, keep_blank_values=True)])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def masked_config(config: dict[str, Any]) -> dict[str, Any]:
    masked: dict[str, Any] = mask_secrets(config)
    if isinstance(masked.get("url"), str):
        masked["url"] = mask_url(masked["url"])
    return masked


def _keep_secrets(new: Any, old: Any) -> Any:
    """``new`` with every masked secret replaced by the stored value at the same place."""
    if not (isinstance(new, dict) and isinstance(old, dict)):
        return new
    if isinstance(old.get("url"), str) and new.get("url") == mask_url(old["url"]):
        new = {**new, "url": old["url"]}
    return {
        k: old.get(k)
        if is_secret_key(k) and v == MASK and k in old
        else _keep_secrets(v, old.get(k))
        for k, v in new.items()
    }


@dataclass(frozen=True)
class ChannelChange:
    name: str | None = None
    config: dict[str, Any] | None = None
    enabled: bool | None = None


@dataclass(frozen=True)
class RuleSpec:
    name: str
    kind: RuleKind
    channel_ids: list[int]
    job_id: int | None = None
    tag: str | None = None
    params: dict[str, Any] | None = None
    cooldown_s: int = 600
    enabled: bool = True


def _flush_unique(session: Session, what: str, name: str) -> None:
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise ConflictError(f"an alert {what} named {name!r} exists already") from None


def _channel_view(ch: AlertChannel) -> dict[str, Any]:
    """What the audit log keeps of a channel: its config masked as when listed."""
    return {
        "name": ch.name,
        "kind": ch.kind,
        "enabled": ch.enabled,
        "config": masked_config(ch.config),
    }


def list_channels(session: Session) -> Sequence[AlertChannel]:
    return session.scalars(select(AlertChannel).order_by(AlertChannel.name)).all()


def get_channel(session: Session, channel_id: int) -> AlertChannel:
    channel = session.get(AlertChannel, channel_id)
    if channel is None:
        raise NotFoundError(f"no alert channel with id {channel_id}")
    return channel


def create_channel(
    session: Session, actor: Actor, name: str, kind: ChannelKind, config: dict[str, Any]
) -> AlertChannel:
    now = utcnow()
    channel = AlertChannel(
        name=name, kind=kind.value, config=parse_config(kind, config), enabled=True
    )
    channel.created_at = channel.updated_at = now
    session.add(channel)
    _flush_unique(session, "channel", name)
    record_as(
        session, actor, "create", "alert_channel", channel.id, diff({}, _channel_view(channel))
    )
    return channel


def update_channel(
    session: Session, actor: Actor, channel: AlertChannel, change: ChannelChange
) -> AlertChannel:
    before = _channel_view(channel)
    if change.name is not None:
        channel.name = change.name
    if change.config is not None:
        merged = _keep_secrets(change.config, channel.config)
        channel.config = parse_config(ChannelKind(channel.kind), merged)
    if change.enabled is not None:
        channel.enabled = change.enabled
    channel.updated_at = utcnow()
    _flush_unique(session, "channel", channel.name)
    record_as(
        session, actor, "update", "alert_channel", channel.id, diff(before, _channel_view(channel))
    )
    return channel


def delete_channel(session: Session, actor: Actor, channel: AlertChannel) -> None:
    for rule in session.scalars(select(AlertRule)).all():
        if channel.id in (rule.channel_ids or []):
            rule.channel_ids = [c for c in rule.channel_ids if c != channel.id]
    record_as(
        session, actor, "delete", "alert_channel", channel.id, diff(_channel_view(channel), {})
    )
    session.delete(channel)


# --- rules ---------------------------------------------------------------------------------


def _rule_view(rule: AlertRule) -> dict[str, Any]:
    return {
        "name": rule.name,
        "kind": rule.kind,
        "job_id": rule.job_id,
        "tag": rule.tag,
        "params": rule.params,
        "channel_ids": rule.channel_ids,
        "cooldown_s": rule.cooldown_s,
        "enabled": rule.enabled,
    }


def _check_rule(session: Session, rule: AlertRule) -> None:
    if (rule.job_id is not None or rule.tag is not None) and RuleKind(rule.kind) not in RUN_RULES:
        raise ValidationError("job_id", f"a {rule.kind} rule is system-wide: no job or tag")
    if rule.job_id is not None and rule.tag is not None:
        raise ValidationError("tag", "give a job or a tag, not both")
    if rule.job_id is not None and session.get(Job, rule.job_id) is None:
        raise ValidationError("job_id", f"no job with id {rule.job_id}")
    known = set(session.scalars(select(AlertChannel.id)).all())
    missing = [c for c in rule.channel_ids if c not in known]
    if missing:
        raise ValidationError("channel_ids", f"no alert channel with id {missing[0]}")


def list_rules(session: Session) -> Sequence[AlertRule]:
    return session.scalars(select(AlertRule).order_by(AlertRule.name)).all()


def get_rule(session: Session, rule_id: int) -> AlertRule:
    rule = session.get(AlertRule, rule_id)
    if rule is None:
        raise NotFoundError(f"no alert rule with id {rule_id}")
    return rule


def create_rule(session: Session, actor: Actor, spec: RuleSpec) -> AlertRule:
    now = utcnow()
    rule = AlertRule(
        name=spec.name,
        kind=spec.kind.value,
        job_id=spec.job_id,
        tag=spec.tag,
        params=parse_params(spec.params or {}),
        channel_ids=list(dict.fromkeys(spec.channel_ids)),
        cooldown_s=spec.cooldown_s,
        enabled=spec.enabled,
        created_at=now,
        updated_at=now,
    )
    _check_rule(session, rule)
    session.add(rule)
    _flush_unique(session, "rule", spec.name)
    record_as(session, actor, "create", "alert_rule", rule.id, diff({}, _rule_view(rule)))
    return rule


def update_rule(
    session: Session, actor: Actor, rule: AlertRule, changes: dict[str, Any]
) -> AlertRule:
    """Apply the fields present in ``changes`` (names as in ``RuleSpec``; kind is fixed)."""
    before = _rule_view(rule)
    for key, value in changes.items():
        if key == "params":
            value = parse_params(value or {})
        elif key == "channel_ids":
            value = list(dict.fromkeys(value))
        setattr(rule, key, value)
    rule.updated_at = utcnow()
    _check_rule(session, rule)
    _flush_unique(session, "rule", rule.name)
    record_as(session, actor, "update", "alert_rule", rule.id, diff(before, _rule_view(rule)))
    return rule


def delete_rule(session: Session, actor: Actor, rule: AlertRule) -> None:
    record_as(session, actor, "delete", "alert_rule", rule.id, diff(_rule_view(rule), {}))
    session.delete(rule)


# --- alerts --------------------------------------------------------------------------------


def list_alerts(
    session: Session, limit: int = 50, before_id: int | None = None, rule_id: int | None = None
) -> tuple[list[tuple[Alert, list[AlertDelivery]]], int | None]:
    """Alerts newest first with their deliveries, and the id to continue before."""
    query = select(Alert)
    if before_id is not None:
        query = query.where(Alert.id < before_id)
    if rule_id is not None:
        query = query.where(Alert.rule_id == rule_id)
    rows = list(session.scalars(query.order_by(Alert.id.desc()).limit(limit + 1)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    deliveries: dict[int, list[AlertDelivery]] = {a.id: [] for a in rows}
    if rows:
        for d in session.scalars(
            select(AlertDelivery)
            .where(AlertDelivery.alert_id.in_(list(deliveries)))
            .order_by(AlertDelivery.id)
        ):
            deliveries[d.alert_id].append(d)
    return [(a, deliveries[a.id]) for a in rows], rows[-1].id if more else None
