"""Schedulers that vouch for themselves, so that the others take over a dead one's claims fast.

Each scheduler keeps a ``leases`` row ``scheduler:<holder>`` whose expiry it pushes forward
every ``BEAT`` from a thread of its own (not the claiming thread, which may be busy with a
large burst). Every scheduler checks every ``CHECK``: runs still SCHEDULED and claimed by a
holder whose row expired (killed, frozen, cut off from the database, on any host) are
released and claimed again at once. A mistaken takeover is harmless: the worker's guard
runs one delivery per run id.

Guarantee: runs claimed by a scheduler that stops beating are published by another within
``TTL + CHECK`` (~1 s) of its last beat, instead of after the per-run lease (30 s).
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from mainspring.context import AppContext
from mainspring.core.states import RunState
from mainspring.db.models import Lease, Run
from mainspring.services.clock import utcnow

logger = logging.getLogger("mainspring.scheduler")

PREFIX = "scheduler:"
BEAT = 0.2  # seconds between two beats
TTL = timedelta(milliseconds=800)  # a holder silent this long is dead
CHECK = 0.25  # seconds between two looks for dead holders


def beat(session: Session, holder: str, now: datetime) -> None:
    """Push this holder's expiry forward (creating its row on the first beat)."""
    name = f"{PREFIX}{holder}"[:100]
    expires = now + TTL
    done = session.execute(
        update(Lease).where(Lease.name == name).values(expires_at=expires, holder=holder[:200])
    )
    if not done.rowcount:  # type: ignore[attr-defined]
        session.add(Lease(name=name, holder=holder[:200], fencing_token=0, expires_at=expires))


def forget(session: Session, holder: str) -> None:
    session.execute(delete(Lease).where(Lease.name == f"{PREFIX}{holder}"[:100]))


def release_orphaned(session: Session, me: str, now: datetime) -> int:
    """Release SCHEDULED runs held by schedulers whose beat expired; return how many."""
    holders = set(
        session.scalars(
            select(Run.claimed_by)
            .where(Run.state == RunState.SCHEDULED.value, Run.claimed_by.is_not(None))
            .distinct()
        ).all()
    )
    holders.discard(me)
    if not holders:
        return 0
    alive = set(
        session.scalars(
            select(Lease.holder).where(Lease.name.startswith(PREFIX), Lease.expires_at >= now)
        ).all()
    )
    dead = [h for h in holders if h not in alive]
    if not dead:
        return 0
    result = session.execute(
        update(Run)
        .where(Run.state == RunState.SCHEDULED.value, Run.claimed_by.in_(dead))
        .values(claimed_by=None, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


class Heartbeat:
    """The beating thread of one scheduler process."""

    def __init__(self, ctx: AppContext, holder: str) -> None:
        self._ctx = ctx
        self._holder = holder
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ms-heartbeat", daemon=True)

    def start(self) -> None:
        """Beat once now (so that no claim precedes the first beat), then keep beating."""
        self._beat()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            with self._ctx.session() as session:
                forget(session, self._holder)
        except Exception:
            logger.exception("could not remove this scheduler's heartbeat; it will expire")

    def _run(self) -> None:
        while not self._stop.wait(BEAT):
            self._beat()

    def _beat(self) -> None:
        try:
            with self._ctx.session() as session:
                beat(session, self._holder, utcnow())
        except Exception:
            logger.exception("scheduler heartbeat failed; other schedulers may take over")
