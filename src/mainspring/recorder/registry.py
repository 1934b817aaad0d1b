"""The workers registry from remote control: what heartbeats do not say.

Heartbeat events carry liveness, load and counts; the queues a worker consumes, the task
names it has registered (offered when a job is created), its pool and concurrency come from
``inspect`` replies, asked when a worker comes online and periodically.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from mainspring.core.states import WorkerStatus
from mainspring.db.models import Worker

logger = logging.getLogger("mainspring.recorder")
POOL_NAMES = {"thread": "threads"}


@dataclass
class WorkerInfo:
    queues: list[str] = field(default_factory=list)
    registered_tasks: list[str] = field(default_factory=list)
    pool: str | None = None
    concurrency: int | None = None
    processed: int | None = None
    pid: int | None = None


def inspect_workers(app: Any, hosts: list[str] | None, timeout: float) -> dict[str, WorkerInfo]:
    """Replies of the given workers (all when None) to three inspect calls."""
    inspector = app.control.inspect(destination=hosts, timeout=timeout)
    queues = inspector.active_queues() or {}
    registered = inspector.registered() or {}
    stats = inspector.stats() or {}
    return {
        host: parse_replies(queues.get(host), registered.get(host), stats.get(host))
        for host in set(queues) | set(registered) | set(stats)
    }


def parse_replies(queues: Any, registered: Any, stats: Any) -> WorkerInfo:
    """One worker's replies as a ``WorkerInfo``; missing or odd replies leave fields empty."""
    info = WorkerInfo()
    if isinstance(queues, list):
        info.queues = sorted({str(q.get("name")) for q in queues if isinstance(q, dict)})
    if isinstance(registered, list):
        info.registered_tasks = sorted(str(name).split(" ")[0] for name in registered)
    if isinstance(stats, dict):
        pool = stats.get("pool") or {}
        implementation = str(pool.get("implementation") or "")
        info.pool = _pool_name(implementation) or None
        concurrency = pool.get("max-concurrency")
        info.concurrency = int(concurrency) if isinstance(concurrency, int) else None
        total = stats.get("total")
        info.processed = sum(total.values()) if isinstance(total, dict) else None
        info.pid = stats.get("pid") if isinstance(stats.get("pid"), int) else None
    return info


def _pool_name(implementation: str) -> str:
    """``celery.concurrency.prefork:TaskPool`` → ``prefork``, named as ``worker -P`` names it."""
    module = implementation.split(":")[0].rsplit(".", 1)[-1]
    return POOL_NAMES.get(module, module)


def write_inspection(session: Session, infos: dict[str, WorkerInfo], now: datetime) -> None:
    for host, info in infos.items():
        worker = session.get(Worker, host)
        if worker is None:
            worker = Worker(
                hostname=host,
                status=WorkerStatus.ONLINE.value,
                first_seen_at=now,
                last_heartbeat_at=now,
                software={},
                capabilities={},
                active=0,
                processed=0,
            )
            session.add(worker)
        worker.queues = info.queues
        worker.registered_tasks = info.registered_tasks
        worker.pool = info.pool or worker.pool
        worker.concurrency = info.concurrency or worker.concurrency
        if info.processed is not None:
            worker.processed = max(worker.processed or 0, info.processed)
        worker.pid = info.pid or worker.pid
        worker.updated_at = now
