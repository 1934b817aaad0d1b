"""The schema, shared by every role. Designed for the whole roadmap, extended by migrations.

Conventions: surrogate integer keys except ``runs.id`` (the Celery task id) and
``workers.hostname``; every instant is an aware UTC ``UTCDateTime``; JSON documents that the
code interprets carry a ``v`` version key.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mainspring.db.types import LongText, UTCDateTime

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BIGINT that still auto-increments on SQLite (which only does so for INTEGER PRIMARY KEY).
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Job(Base):
    """A schedule: what to run (task or workflow), where, when, and with which policies."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # What runs: a task name (registered or built-in) and its arguments; a workflow (M7) is
    # the task ``mainspring.workflow`` with ``kwargs={"definition": {...}}``.
    task: Mapped[str] = mapped_column(String(255), index=True)
    args: Mapped[list[Any]] = mapped_column(JSON, default=list)
    kwargs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Where: a queue, optionally one worker, optionally every live worker of the queue.
    queue: Mapped[str] = mapped_column(String(200), default="default", index=True)
    target_worker: Mapped[str | None] = mapped_column(String(255), nullable=True)
    broadcast: Mapped[bool] = mapped_column(Boolean, default=False)
    # When: trigger spec (versioned JSON), its kind for filtering, the zone it is read in.
    trigger_kind: Mapped[str] = mapped_column(String(16))
    trigger: Mapped[dict[str, Any]] = mapped_column(JSON)
    timezone: Mapped[str] = mapped_column(String(64))
    start_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    end_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    max_runs: Mapped[int | None] = mapped_column(Integer, nullable=True)
    jitter_ms: Mapped[int] = mapped_column(Integer, default=0)
    # Policies (M2), execution options (M4: retries, time limits, expiry, priority, late ack),
    # data window (seed 004), alerts (M8), retention (M3).
    misfire_policy: Mapped[str] = mapped_column(String(16), default="run_once")
    misfire_grace_s: Mapped[int] = mapped_column(Integer, default=60)
    overlap_policy: Mapped[str] = mapped_column(String(16), default="allow")
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    data_window: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    notifications: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    retention_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    retention_max_runs: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Scheduler state: the only thing the scheduler scans is (enabled, next_fire_at).
    next_fire_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_fire_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    fire_count: Mapped[int] = mapped_column(BigInteger, default=0)
    last_run_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    last_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # Optimistic concurrency: every update bumps it, a stale one is refused (M5).
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[str | None] = mapped_column(String(150), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_jobs_due", "enabled", "next_fire_at"),)


class JobDependency(Base):
    """``job_id`` starts when a run of ``upstream_job_id`` ends with ``condition`` (M7)."""

    __tablename__ = "job_dependencies"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    upstream_job_id: Mapped[int] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), index=True
    )
    condition: Mapped[str] = mapped_column(String(16), default="success")

    __table_args__ = (UniqueConstraint("job_id", "upstream_job_id"),)


class Run(Base):
    """One execution: id is the Celery task id; the recorder is its one writer after publish."""

    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    job_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"), nullable=True
    )
    task: Mapped[str] = mapped_column(String(255))
    args: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    kwargs: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    queue: Mapped[str | None] = mapped_column(String(200), nullable=True)
    routing_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    worker: Mapped[str | None] = mapped_column(String(255), nullable=True)
    worker_pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    state: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    trigger: Mapped[str] = mapped_column(String(16))
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True, unique=True)
    # Timeline. ``scheduled_for`` is the due instant of a scheduled or delayed run.
    scheduled_for: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    window_start: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    window_end: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    received_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lateness_ms: Mapped[float | None] = mapped_column(nullable=True)
    runtime_ms: Mapped[float | None] = mapped_column(nullable=True)
    # Scheduler lease: a SCHEDULED run whose lease expired may be published by any scheduler.
    claimed_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Why a run was skipped or cancelled; the run a held fire waits for (overlap queue_one).
    reason: Mapped[str | None] = mapped_column(String(255), nullable=True)
    waits_for: Mapped[str | None] = mapped_column(String(100), nullable=True)
    # Outcome.
    result: Mapped[Any] = mapped_column(JSON, nullable=True)
    exception_type: Mapped[str | None] = mapped_column(String(255), nullable=True)
    exception_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    traceback: Mapped[str | None] = mapped_column(LongText(), nullable=True)
    # Lineage: workflows (root/parent), broadcast children (parent), retries (attempt).
    parent_id: Mapped[str | None] = mapped_column(String(100), nullable=True, index=True)
    root_id: Mapped[str | None] = mapped_column(String(100), nullable=True, index=True)
    log_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    log_truncated: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (
        UniqueConstraint("job_id", "scheduled_for"),
        Index("ix_runs_created", "created_at", "id"),
        Index("ix_runs_job_created", "job_id", "created_at"),
        Index("ix_runs_state_created", "state", "created_at"),
        Index("ix_runs_task_created", "task", "created_at"),
        Index("ix_runs_worker_created", "worker", "created_at"),
        Index("ix_runs_queue_created", "queue", "created_at"),
        Index("ix_runs_state_due", "state", "scheduled_for"),
    )


class RunLog(Base):
    """A chunk of a run's output, in order by ``seq``; the worker emits one every ~200 ms."""

    __tablename__ = "run_logs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    stream: Mapped[str] = mapped_column(String(16), default="log")
    text: Mapped[str] = mapped_column(LongText())

    __table_args__ = (UniqueConstraint("run_id", "seq"),)


class Worker(Base):
    """A worker host as last reported through Celery events."""

    __tablename__ = "workers"

    hostname: Mapped[str] = mapped_column(String(255), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    queues: Mapped[list[str]] = mapped_column(JSON, default=list)
    registered_tasks: Mapped[list[str]] = mapped_column(JSON, default=list)
    pool: Mapped[str | None] = mapped_column(String(32), nullable=True)
    concurrency: Mapped[int | None] = mapped_column(Integer, nullable=True)
    active: Mapped[int] = mapped_column(Integer, default=0)
    processed: Mapped[int] = mapped_column(BigInteger, default=0)
    loadavg: Mapped[list[float] | None] = mapped_column(JSON, nullable=True)
    software: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    capabilities: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(150), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    language: Mapped[str | None] = mapped_column(String(16), nullable=True)
    timezone: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ApiToken(Base):
    """A bearer token; only its SHA-256 is stored, the secret is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(150))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AuditEntry(Base):
    """Who changed what, when and from where."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(150))
    source_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    changes: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)

    __table_args__ = (Index("ix_audit_log_object", "object_type", "object_id", "at"),)


class Lease(Base):
    """A named lease with expiry and fencing token, for coordination where rows cannot be
    claimed with ``SKIP LOCKED`` (SQLite)."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    fencing_token: Mapped[int] = mapped_column(BigInteger, default=0)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class JobVersion(Base):
    """A job's definition as it stood after one change (M9): who made it, when, and what a
    rollback restores. Kept when the job is deleted (``job_id`` becomes NULL, the name stays)."""

    __tablename__ = "job_versions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"), nullable=True
    )
    job_name: Mapped[str] = mapped_column(String(200), index=True)
    version: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(16))
    # The ``JobSpec`` fields as JSON, with a ``v`` key (see ``services.job_versions``).
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    changed_by: Mapped[str | None] = mapped_column(String(150), nullable=True)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    summary: Mapped[str] = mapped_column(String(500), default="")

    __table_args__ = (UniqueConstraint("job_id", "version"),)


class AlertChannel(Base):
    """Where alerts go (M8): a webhook, an SMTP mailbox or a command. ``config`` holds the
    kind's settings with a ``v`` key, secrets included (masked whenever it is listed)."""

    __tablename__ = "alert_channels"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(150), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AlertRule(Base):
    """When to alert (M8): a condition ``kind`` with its ``params`` (versioned JSON), for every
    job, one job or one tag, sent to ``channel_ids``, at most once per ``cooldown_s`` per key."""

    __tablename__ = "alert_rules"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(150), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    job_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), nullable=True, index=True
    )
    tag: Mapped[str | None] = mapped_column(String(100), nullable=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    channel_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    cooldown_s: Mapped[int] = mapped_column(Integer, default=600)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Alert(Base):
    """One alert raised by a rule; repeats of its key within the cooldown only count in
    ``suppressed``. ``payload`` is what the channels receive (with a ``v`` key)."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    rule_id: Mapped[int | None] = mapped_column(
        ForeignKey("alert_rules.id", ondelete="SET NULL"), nullable=True
    )
    kind: Mapped[str] = mapped_column(String(32))
    dedup_key: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(String(500))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    run_id: Mapped[str | None] = mapped_column(String(100), nullable=True, index=True)
    job_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    suppressed: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)

    __table_args__ = (Index("ix_alerts_rule_key", "rule_id", "dedup_key", "created_at"),)


class AlertDelivery(Base):
    """One alert to one channel: ``pending`` until sent, retried with backoff, ``failed``
    after the last attempt; the last error is kept."""

    __tablename__ = "alert_deliveries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    channel_id: Mapped[int | None] = mapped_column(
        ForeignKey("alert_channels.id", ondelete="SET NULL"), nullable=True
    )
    channel_name: Mapped[str] = mapped_column(String(150))
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_alert_deliveries_due", "state", "next_attempt_at"),)
