"""What the database tells about the roles: who is alive, how far behind the recorder is.

Schedulers beat a ``leases`` row ``scheduler:<holder>`` every 0.2 s (``scheduler.liveness``);
the recorder beats ``recorder:<holder>`` from its alerts action (``RECORDER_PREFIX``), every
few seconds. A role is alive while its row has not expired. Workers are the ``workers`` rows
(the recorder marks them offline after silence). Recorder lag is how long after a run ended
its end was written: ``updated_at - finished_at`` of runs written recently (the worker's
clock against the recorder's, so clock skew between hosts adds to it).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from mainspring.db.models import Lease, Run, Worker
from mainspring.scheduler.liveness import PREFIX as SCHEDULER_PREFIX

RECORDER_PREFIX = "recorder:"
LAG_WINDOW = timedelta(minutes=1)
LAG_SAMPLE = 500


def holder_name() -> str:
    """This process, as ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def alive(session: Session, prefix: str, now: datetime) -> list[str]:
    """Holders of unexpired ``<prefix>*`` leases."""
    return list(
        session.scalars(
            select(Lease.holder)
            .where(Lease.name.startswith(prefix), Lease.expires_at >= now)
            .order_by(Lease.holder)
        ).all()
    )


def last_beat(session: Session, prefix: str) -> datetime | None:
    """The latest expiry of any ``<prefix>*`` lease (None when there is no row)."""
    value: datetime | None = session.scalar(
        select(func.max(Lease.expires_at)).where(Lease.name.startswith(prefix))
    )
    return value


def beat(session: Session, prefix: str, holder: str, now: datetime, ttl: timedelta) -> None:
    """Push this holder's expiry forward, creating its row on the first beat."""
    name = f"{prefix}{holder}"[:100]
    done = session.execute(
        update(Lease).where(Lease.name == name).values(expires_at=now + ttl, holder=holder[:200])
    )
    if not done.rowcount:  # type: ignore[attr-defined]
        session.add(Lease(name=name, holder=holder[:200], fencing_token=0, expires_at=now + ttl))


def forget(session: Session, prefix: str, holder: str) -> None:
    session.execute(delete(Lease).where(Lease.name == f"{prefix}{holder}"[:100]))


def recorder_lag_s(session: Session, now: datetime) -> float | None:
    """The 90th percentile of write delay (seconds) over runs that ended in the last minute;
    None when none did."""
    rows = session.execute(
        select(Run.updated_at, Run.finished_at)
        .where(Run.updated_at >= now - LAG_WINDOW, Run.finished_at.is_not(None))
        .order_by(Run.updated_at.desc())
        .limit(LAG_SAMPLE)
    ).all()
    delays = sorted(max(0.0, (written - ended).total_seconds()) for written, ended in rows if ended)
    if not delays:
        return None
    return delays[min(len(delays) - 1, int(0.9 * len(delays)))]


@dataclass(frozen=True)
class WorkerCounts:
    online: int
    offline: int


def worker_counts(session: Session) -> WorkerCounts:
    rows = session.execute(select(Worker.status, func.count()).group_by(Worker.status))
    counts: dict[str, int] = dict(rows.all())  # Row pairs, not the Result's keys()
    return WorkerCounts(online=int(counts.get("online", 0)), offline=int(counts.get("offline", 0)))


__all__ = [
    "RECORDER_PREFIX",
    "SCHEDULER_PREFIX",
    "WorkerCounts",
    "alive",
    "beat",
    "forget",
    "holder_name",
    "last_beat",
    "recorder_lag_s",
    "worker_counts",
]
