"""The run guard on a SQL database, for brokers without Redis (RabbitMQ with the default
database result backend): claims are rows with a primary key, so the first INSERT wins
atomically on SQLite, PostgreSQL and MySQL alike.

The tables belong to the guard, not to Mainspring's schema: like Celery's own result tables
they are created on first use in whatever database the result backend names.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from mainspring.worker.guard import REVOKE, TERMINATE, StartedRecord, Verdict

metadata = MetaData()
claims = Table(
    "mainspring_run_claims",
    metadata,
    Column("run_id", String(100), primary_key=True),
    Column("attempt", Integer, primary_key=True, autoincrement=False),
    Column("holder", String(300), nullable=False),
    Column("claimed_at", DateTime, nullable=False),
)
revocations = Table(
    "mainspring_revocations",
    metadata,
    Column("run_id", String(100), primary_key=True),
    Column("mode", String(16), nullable=False),
    Column("revoked_at", DateTime, nullable=False),
)
PRUNE_EVERY = 1000  # claims between two deletions of expired rows


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def engine_for_backend(url: str) -> Engine:
    """An engine on the database a ``db+...`` result backend URL names."""
    bare = url.removeprefix("db+")
    options: dict[str, Any] = {"pool_pre_ping": True}
    if bare.startswith("sqlite"):
        options["connect_args"] = {"timeout": 30}
    return create_engine(bare, **options)


class SqlRunStore:
    """Claims and revocations as rows; expired ones are pruned now and then."""

    records_started = False  # Celery's ``task_track_started`` records STARTED here

    def __init__(self, engine: Engine, ttl: int) -> None:
        self._engine = engine
        self._ttl = timedelta(seconds=ttl)
        self._counter = itertools.count()
        metadata.create_all(engine, checkfirst=True)

    def claim(
        self,
        run_id: str,
        attempt: int,
        holder: str,
        takeover: bool,
        started: StartedRecord | None = None,
    ) -> Verdict:
        if next(self._counter) % PRUNE_EVERY == PRUNE_EVERY - 1:
            self._prune()
        with self._engine.begin() as conn:
            revoked = conn.scalar(select(revocations.c.mode).where(revocations.c.run_id == run_id))
            if revoked is not None:
                return Verdict.REVOKED
            key = (claims.c.run_id == run_id) & (claims.c.attempt == attempt)
            if takeover:
                done = conn.execute(update(claims).where(key).values(holder=holder))
                if done.rowcount:
                    return Verdict.RUN
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    insert(claims).values(
                        run_id=run_id, attempt=attempt, holder=holder, claimed_at=_now()
                    )
                )
        except IntegrityError:
            return Verdict.DUPLICATE
        return Verdict.RUN

    def holder(self, run_id: str, attempt: int) -> str | None:
        key = (claims.c.run_id == run_id) & (claims.c.attempt == attempt)
        with self._engine.connect() as conn:
            value: str | None = conn.scalar(select(claims.c.holder).where(key))
        return value

    def revoke(self, run_id: str, terminate: bool) -> None:
        mode = TERMINATE if terminate else REVOKE
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    insert(revocations).values(run_id=run_id, mode=mode, revoked_at=_now())
                )
        except IntegrityError:
            with self._engine.begin() as conn:
                conn.execute(
                    update(revocations).where(revocations.c.run_id == run_id).values(mode=mode)
                )

    def terminate_requested(self, run_id: str) -> bool:
        with self._engine.connect() as conn:
            mode = conn.scalar(select(revocations.c.mode).where(revocations.c.run_id == run_id))
        return mode == TERMINATE

    def _prune(self) -> None:
        cutoff = _now() - self._ttl
        with self._engine.begin() as conn:
            conn.execute(delete(claims).where(claims.c.claimed_at < cutoff))
            conn.execute(delete(revocations).where(revocations.c.revoked_at < cutoff))
