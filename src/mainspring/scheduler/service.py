"""The scheduler loop: claim ahead, sleep to the due instant, publish, mark sent."""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import datetime, timedelta

from mainspring.context import AppContext
from mainspring.scheduler.claims import (
    DueRun,
    claim_due_jobs,
    mark_sent,
    next_due_at,
    reclaim_orphans,
)
from mainspring.scheduler.publisher import Publisher
from mainspring.services.clock import Clock, SystemClock

logger = logging.getLogger("mainspring.scheduler")

LEAD = timedelta(milliseconds=300)


class Scheduler:
    """One scheduler process; any number may run against the same database and broker."""

    def __init__(
        self,
        ctx: AppContext,
        publisher: Publisher,
        clock: Clock | None = None,
        poll_interval: float | None = None,
    ) -> None:
        self._ctx = ctx
        self._publisher = publisher
        self._clock = clock or SystemClock()
        self._poll = poll_interval or ctx.settings.scheduler_poll_interval
        self.holder = f"{socket.gethostname()}:{os.getpid()}"

    def run(self, stop: threading.Event) -> None:
        logger.info("scheduler %s started", self.holder)
        while not stop.is_set():
            try:
                delay = self.tick()
            except Exception:
                logger.exception("scheduler tick failed; retrying")
                delay = self._poll
            stop.wait(delay)
        logger.info("scheduler %s stopped", self.holder)

    def tick(self) -> float:
        """Claim and publish what is due soon; return how long to sleep before the next tick."""
        now = self._clock.now()
        with self._ctx.session() as session:
            claimed = reclaim_orphans(session, now, self.holder)
            claimed += claim_due_jobs(session, now + LEAD, now, self.holder)
        if claimed:
            self._publish_on_time(sorted(claimed, key=lambda r: r.due))
        with self._ctx.session() as session:
            upcoming = next_due_at(session)
        return self._sleep_for(upcoming)

    def _publish_on_time(self, runs: list[DueRun]) -> None:
        """Publish each run at its due instant. Claims reach at most ``LEAD`` ahead, so this
        finishes promptly even while stopping, and nothing claimed is left behind."""
        sent: list[tuple[DueRun, datetime]] = []
        try:
            for run in runs:
                self._wait_until(run.due)
                self._publisher.publish(run)
                sent.append((run, self._clock.now()))
        finally:
            if sent:
                with self._ctx.session() as session:
                    mark_sent(session, sent)
        for run, at in sent:
            logger.debug("published run %s of job %s at %s", run.run_id, run.job_id, at)

    def _wait_until(self, due: datetime) -> None:
        remaining = (due - self._clock.now()).total_seconds()
        if remaining > 0:
            self._clock.sleep(remaining)

    def _sleep_for(self, upcoming: datetime | None) -> float:
        if upcoming is None:
            return self._poll
        until = (upcoming - LEAD - self._clock.now()).total_seconds()
        return max(0.0, min(self._poll, until))
