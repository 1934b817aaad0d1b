"""Raising an alert (deduplicated, rate-limited) and delivering it, with retries and backoff.

Rate limit: a rule raises at most one alert per ``dedup_key`` (a job, a worker, a queue…) per
``cooldown_s``; a repeat inside the cooldown only increments the last alert's ``suppressed``,
so a flapping job sends one alert, not hundreds. Each alert gets one delivery per enabled
channel of its rule. A delivery that fails is tried again after ``base * 2**attempts``
seconds (capped), and is ``failed`` after ``max_attempts``; its last error is kept.
Network calls happen outside any transaction.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from mainspring.alerts.channels import DeliveryError, send
from mainspring.context import AppContext
from mainspring.db.models import Alert, AlertChannel, AlertDelivery, AlertRule
from mainspring.services.clock import utcnow

logger = logging.getLogger("mainspring.alerts")

PENDING, SENT, FAILED = "pending", "sent", "failed"
PAYLOAD_VERSION = 1


@dataclass(frozen=True)
class DeliveryPolicy:
    base_backoff_s: float = 5.0
    max_backoff_s: float = 900.0
    max_attempts: int = 8
    batch: int = 50
    # Seconds of sending per tick: the rest waits for the next tick, so slow channels never
    # hold the recorder's maintenance thread (reconciliation, lost runs) for long.
    budget_s: float = 20.0
    allow_commands: bool = False  # settings.alerts_allow_commands

    def delay(self, attempts: int) -> float:
        return float(min(self.max_backoff_s, self.base_backoff_s * 2 ** max(0, attempts - 1)))


def raise_alert(
    session: Any,
    rule: AlertRule,
    key: str,
    payload: dict[str, Any],
    now: datetime,
    run_id: str | None = None,
    job_id: int | None = None,
) -> Alert | None:
    """Record an alert and its deliveries, or count it as suppressed within the cooldown."""
    last = session.scalars(
        select(Alert)
        .where(
            Alert.rule_id == rule.id,
            Alert.dedup_key == key[:255],
            Alert.created_at > now - timedelta(seconds=rule.cooldown_s),
        )
        .order_by(Alert.id.desc())
        .limit(1)
    ).first()
    if last is not None:
        last.suppressed = (last.suppressed or 0) + 1
        return None
    subject = str(payload.get("subject", rule.kind))[:500]
    body = {"v": PAYLOAD_VERSION, "rule": rule.name, "kind": rule.kind, **payload}
    alert = Alert(
        rule_id=rule.id,
        kind=rule.kind,
        dedup_key=key[:255],
        subject=subject,
        payload=body,
        run_id=run_id,
        job_id=job_id,
        suppressed=0,
        created_at=now,
    )
    session.add(alert)
    session.flush()
    channels = session.scalars(
        select(AlertChannel).where(
            AlertChannel.id.in_(rule.channel_ids or [-1]), AlertChannel.enabled.is_(True)
        )
    ).all()
    for channel in channels:
        session.add(
            AlertDelivery(
                alert_id=alert.id,
                channel_id=channel.id,
                channel_name=channel.name,
                state=PENDING,
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )
    logger.info("alert %s raised: %s", alert.id, subject)
    return alert


def deliver_due(ctx: AppContext, policy: DeliveryPolicy, now: datetime | None = None) -> int:
    """Send every delivery whose time has come; return how many were sent."""
    now = now or utcnow()
    with ctx.session() as session:
        rows = session.execute(
            select(
                AlertDelivery.id,
                AlertDelivery.attempts,
                AlertChannel.kind,
                AlertChannel.config,
                Alert.payload,
            )
            .join(AlertChannel, AlertChannel.id == AlertDelivery.channel_id)
            .join(Alert, Alert.id == AlertDelivery.alert_id)
            .where(AlertDelivery.state == PENDING, AlertDelivery.next_attempt_at <= now)
            .order_by(AlertDelivery.next_attempt_at)
            .limit(policy.batch)
        ).all()
    sent = 0
    deadline = time.monotonic() + policy.budget_s
    for delivery_id, attempts, kind, config, payload in rows:
        if time.monotonic() > deadline:
            break
        error = _try_send(kind, config, payload, policy.allow_commands)
        sent += _record(ctx, policy, delivery_id, attempts, error)
    return sent


COMMANDS_OFF = "command channels are off; set MAINSPRING_ALERTS_ALLOW_COMMANDS=true to use them"


def _try_send(
    kind: str, config: dict[str, Any], payload: dict[str, Any], allow_commands: bool
) -> str | None:
    if kind == "command" and not allow_commands:
        return COMMANDS_OFF
    try:
        send(kind, config, payload)
    except DeliveryError as exc:
        return str(exc)
    except Exception as exc:  # a bug or a broken config must not stop the others
        logger.exception("alert delivery crashed")
        return f"{type(exc).__name__}: {exc}"
    return None


def _record(
    ctx: AppContext, policy: DeliveryPolicy, delivery_id: int, attempts: int, error: str | None
) -> int:
    """Store the outcome (compare-and-set on ``attempts``); 1 when delivered."""
    now = utcnow()
    tried = attempts + 1
    if error is None:
        values: dict[str, Any] = {"state": SENT, "sent_at": now, "next_attempt_at": None}
    elif tried >= policy.max_attempts:
        values = {"state": FAILED, "next_attempt_at": None, "last_error": error[:2000]}
        logger.warning("alert delivery %s failed for good: %s", delivery_id, error)
    else:
        retry_at = now + timedelta(seconds=policy.delay(tried))
        values = {"next_attempt_at": retry_at, "last_error": error[:2000]}
        logger.info("alert delivery %s failed (%s); retrying at %s", delivery_id, error, retry_at)
    with ctx.session() as session:
        session.execute(
            update(AlertDelivery)
            .where(AlertDelivery.id == delivery_id, AlertDelivery.attempts == attempts)
            .values(attempts=tried, **values)
        )
    return 1 if error is None else 0


def send_test(channel: AlertChannel, allow_commands: bool) -> str | None:
    """Send a test alert through ``channel`` now; the error, or None when it was taken."""
    payload = {
        "v": PAYLOAD_VERSION,
        "kind": "test",
        "rule": None,
        "subject": f"Test alert from Mainspring to channel {channel.name!r}",
        "at": utcnow().isoformat(),
    }
    return _try_send(channel.kind, channel.config, payload, allow_commands)
