"""The scheduler loop: claim ahead, sleep to the due instant, publish, mark sent.

Claimed runs wait in an in-memory heap ordered by publish instant; the loop sleeps on the
wall clock until the next one (or the next claim), and a wake-up (a job changed) interrupts
the sleep so that the change is claimed, or a cancelled run dropped, at once.
"""

from __future__ import annotations

import heapq
import logging
import os
import socket
import threading
from datetime import datetime, timedelta

from mainspring.context import AppContext
from mainspring.scheduler.claims import (
    claim_due_jobs,
    claim_held_runs,
    mark_sent,
    next_due_at,
    not_scheduled,
    release_claims,
    release_waiting,
)
from mainspring.scheduler.firing import DueRun
from mainspring.scheduler.publisher import Publisher, Revoker
from mainspring.scheduler.wakeup import WakeupListener
from mainspring.services.clock import Clock, SystemClock

logger = logging.getLogger("mainspring.scheduler")

LEAD = timedelta(milliseconds=300)
_WAKE_CHECK = 0.05  # while waiting to publish, look at wake-ups this often (seconds)


class Scheduler:
    """One scheduler process; any number may run against the same database and broker.

    Guarantees: each fire is claimed by one scheduler in the transaction that advances its
    job; a run is published at or after its due instant; a claimed run this process stops
    holding is released (or its lease expires) so that another scheduler publishes it.
    """

    def __init__(
        self,
        ctx: AppContext,
        publisher: Publisher,
        clock: Clock | None = None,
        poll_interval: float | None = None,
        revoker: Revoker | None = None,
        listen: bool = True,
    ) -> None:
        self._ctx = ctx
        self._publisher = publisher
        self._revoker = revoker
        self._clock = clock or SystemClock()
        self._poll = poll_interval or ctx.settings.scheduler_poll_interval
        self._listen = listen
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._pending: list[DueRun] = []
        self._next_claim: datetime | None = None
        self.wake = threading.Event()
        self.lateness_ms: list[float] = []  # of the fires this process published, bounded

    def run(self, stop: threading.Event) -> None:
        listener = None
        if self._listen:
            broker = self._ctx.settings.broker_url
            listener = WakeupListener(self._ctx.engine, broker, self.wake)
            listener.start()
        logger.info("scheduler %s started", self.holder)
        try:
            while not stop.is_set():
                try:
                    delay = self.tick()
                except Exception:
                    logger.exception("scheduler tick failed; retrying")
                    self._next_claim = None
                    delay = self._poll
                if delay > 0:
                    self.wake.wait(delay)
        finally:
            if listener is not None:
                listener.stop()
            self._release_pending()
            logger.info("scheduler %s stopped", self.holder)

    def tick(self) -> float:
        """Claim what is due soon, publish what is due now; return how long to sleep."""
        now = self._clock.now()
        woken = self.wake.is_set()
        self.wake.clear()
        if woken and self._pending:
            self._drop_cancelled()
        if woken or self._next_claim is None or now + LEAD >= self._next_claim:
            self._claim(now)
        self._publish_due()
        return self._delay()

    def _claim(self, now: datetime) -> None:
        horizon = now + LEAD
        revoke: list[str] = []
        with self._ctx.session() as session:
            release_waiting(session, now)
            runs = claim_held_runs(session, horizon, now, self.holder)
        while True:
            with self._ctx.session() as session:
                claim = claim_due_jobs(session, horizon, now, self.holder)
            runs += claim.runs
            revoke += claim.revoke
            if not claim.full:
                break
        for run in runs:
            heapq.heappush(self._pending, run)
        self._revoke(revoke)
        with self._ctx.session() as session:
            upcoming = next_due_at(session)
        poll_at = now + timedelta(seconds=self._poll)
        self._next_claim = min(upcoming, poll_at) if upcoming is not None else poll_at

    def _publish_due(self) -> None:
        """Publish, each at its instant, the runs due within the lead; stop early on a wake-up
        so that a change is claimed before anything later is published."""
        sent: list[tuple[DueRun, datetime]] = []
        try:
            while self._pending:
                head = self._pending[0]
                if head.at - self._clock.now() > LEAD or not self._wait_until(head.at):
                    break
                run = heapq.heappop(self._pending)
                self._publisher.publish(run)
                at = self._clock.now()
                sent.append((run, at))
        finally:
            if sent:
                with self._ctx.session() as session:
                    mark_sent(session, sent)
                self._note(sent)

    def _wait_until(self, at: datetime) -> bool:
        """Sleep until ``at``; False if a wake-up came first."""
        while True:
            remaining = (at - self._clock.now()).total_seconds()
            if remaining <= 0:
                return True
            if self.wake.is_set():
                return False
            self._clock.sleep(min(remaining, _WAKE_CHECK))

    def _delay(self) -> float:
        now = self._clock.now()
        targets = [self._next_claim - LEAD] if self._next_claim else []
        if self._pending:
            targets.append(self._pending[0].at - LEAD)
        if not targets:
            return self._poll
        return max(0.0, min(self._poll, min((t - now).total_seconds() for t in targets)))

    def _drop_cancelled(self) -> None:
        with self._ctx.session() as session:
            gone = not_scheduled(session, [r.run_id for r in self._pending])
        if gone:
            self._pending = [r for r in self._pending if r.run_id not in gone]
            heapq.heapify(self._pending)
            logger.info("dropped %d cancelled run(s) before publishing", len(gone))

    def _revoke(self, run_ids: list[str]) -> None:
        for run_id in run_ids:
            if self._revoker is None:
                logger.warning("run %s replaced but no revoker is configured", run_id)
                continue
            try:
                self._revoker.revoke(run_id)
            except Exception:
                logger.exception("could not revoke run %s", run_id)

    def _release_pending(self) -> None:
        if not self._pending:
            return
        try:
            with self._ctx.session() as session:
                release_claims(session, [r.run_id for r in self._pending])
            self._pending = []
        except Exception:
            logger.exception("could not release claimed runs; their leases will expire")

    def _note(self, sent: list[tuple[DueRun, datetime]]) -> None:
        for run, at in sent:
            late = (at - run.due).total_seconds() * 1000
            self.lateness_ms.append(late)
            logger.debug("published run %s of job %s, %.1f ms late", run.run_id, run.job_id, late)
        del self.lateness_ms[:-10_000]
