"""The scheduler: claim ahead, publish at the due instant, mark sent afterwards.

``run`` uses two threads so that no database work ever sits between a due instant and its
publish. The claiming thread claims fires ``LEAD`` ahead, builds their messages at once
(``Publisher.prepare``) and queues them by publish instant; it also drops runs cancelled
meanwhile and records what was sent. The publishing thread only waits for the head of the
queue and sends every run due at that instant as one burst (``Publisher.send``).

``tick`` does the same steps in sequence on one thread, for tests on a fake clock.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from mainspring.context import AppContext
from mainspring.scheduler.claims import (
    broadcast_due,
    claim_due_jobs,
    claim_held_runs,
    count_due,
    mark_sent,
    next_due_at,
    not_scheduled,
    release_claims,
    release_dead_holders,
    release_waiting,
)
from mainspring.scheduler.firing import DueRun
from mainspring.scheduler.liveness import CHECK, Heartbeat, release_orphaned
from mainspring.scheduler.pending import Pending, PendingRuns
from mainspring.scheduler.publisher import Publisher, Revoker
from mainspring.scheduler.wakeup import WakeupListener
from mainspring.services.clock import Clock, SystemClock

logger = logging.getLogger("mainspring.scheduler")

LEAD = timedelta(seconds=1)  # claim (and build messages) this far ahead of the due instant
BURST_WINDOW = timedelta(seconds=120)  # ... up to this far when a burst is coming
CLAIM_RATE = 1000.0  # fires claimed (and built) per second, until this process has measured it
_RATE_SAMPLE = 200  # a claim of at least this many fires updates the measured rate
_RATE_MARGIN = 1.5  # claim a burst this much earlier than the measured rate says is needed
SYNC_WINDOW = timedelta(milliseconds=300)  # ``tick`` publishes what is due this soon
_SPIN = 0.002  # the last stretch before an instant is slept precisely, not on a condition
_MARK_EVERY = 0.05  # the claiming thread records sent runs at least this often (seconds)
_RETRY_SEND = timedelta(seconds=1)
_WAKE_CHECK = 0.05
_SWITCH_INTERVAL = 0.0002  # seconds
_QUIET = 0.03  # seconds before a publish instant without database work in this process

LiveWorkers = Callable[[], dict[str, set[str]]]


class Scheduler:
    """One scheduler process; any number may run against the same database and broker.

    Guarantees: each fire is claimed by one scheduler in the transaction that advances its
    job; a run is published at or after its due instant; a claimed run this process stops
    holding is released (or its lease expires) so that another scheduler publishes it, and a
    restarted scheduler at once takes over the runs of its killed predecessor on this host.
    """

    def __init__(
        self,
        ctx: AppContext,
        publisher: Publisher,
        clock: Clock | None = None,
        poll_interval: float | None = None,
        revoker: Revoker | None = None,
        listen: bool = True,
        live_workers: LiveWorkers | None = None,
        lead: timedelta = LEAD,
    ) -> None:
        self._ctx = ctx
        self._publisher = publisher
        self._revoker = revoker
        self._clock = clock or SystemClock()
        self._poll = poll_interval or ctx.settings.scheduler_poll_interval
        self._listen = listen
        self._live_workers = live_workers
        self._lead = lead
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._pending = PendingRuns()
        self._sent: queue.SimpleQueue[list[tuple[DueRun, datetime]]] = queue.SimpleQueue()
        self._next_claim: datetime | None = None
        self.wake = threading.Event()
        self._sending = threading.Event()  # the publishing thread is sending a burst
        self.lateness_ms: list[float] = []  # of the fires this process published, bounded
        self.claim_rate = CLAIM_RATE  # fires per second, a moving average of large claims

    # --- two threads --------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        # The publishing thread must get the GIL within a fraction of a millisecond when an
        # instant comes, even while the claiming thread is busy (the default is 5 ms).
        sys.setswitchinterval(min(sys.getswitchinterval(), _SWITCH_INTERVAL))
        listener = None
        if self._listen:
            listener = WakeupListener(self._ctx.engine, self._ctx.settings.broker_url, self.wake)
            listener.start()
        done = threading.Event()
        publishing = threading.Thread(
            target=self._publish_loop, args=(done,), name="ms-publish", daemon=True
        )
        publishing.start()
        heartbeat = Heartbeat(self._ctx, self.holder)
        heartbeat.start()
        logger.info("scheduler %s started", self.holder)
        try:
            self._recover()
            self._claim_loop(stop)
        finally:
            done.set()
            publishing.join(timeout=10)
            if listener is not None:
                listener.stop()
            self._shutdown()
            heartbeat.stop()
            logger.info("scheduler %s stopped", self.holder)

    def _claim_loop(self, stop: threading.Event) -> None:
        next_check = 0.0
        while not stop.is_set():
            try:
                self._flush_sent()
                if not self._burst_imminent():
                    if time.monotonic() >= next_check:
                        self._take_over_dead()
                        next_check = time.monotonic() + CHECK
                    self._claim_if_due()
                delay = min(self._claim_delay(), max(0.0, next_check - time.monotonic()))
            except Exception:
                logger.exception("scheduler claim failed; retrying")
                self._next_claim = None
                delay = self._poll
            self.wake.wait(min(max(delay, 0.01), _MARK_EVERY))

    def _burst_imminent(self) -> bool:
        """Whether a publish is due within ``_QUIET``: database work then waits until it is
        out, so that the publishing thread has the interpreter to itself."""
        if self._sending.is_set():
            return True
        head = self._pending.head()
        return head is not None and (head - self._clock.now()).total_seconds() < _QUIET

    def _publish_loop(self, done: threading.Event) -> None:
        while not done.is_set():
            head = self._pending.head()
            if head is None:
                self._pending.wait(0.1)
                continue
            remaining = (head - self._clock.now()).total_seconds()
            if remaining > _SPIN:
                self._pending.wait(min(remaining - _SPIN, 0.1))
            elif remaining > 0:
                self._clock.sleep(remaining)
            else:
                self._publish_burst()

    def _recover(self) -> None:
        try:
            with self._ctx.session() as session:
                taken = release_dead_holders(session, socket.gethostname(), self.holder)
            if taken:
                logger.info("took over %d run(s) of a killed scheduler on this host", taken)
        except Exception:
            logger.exception("could not look for runs of a killed scheduler; leases will expire")

    def _take_over_dead(self) -> None:
        """Release the claims of schedulers that stopped beating; claim them now."""
        with self._ctx.session() as session:
            taken = release_orphaned(session, self.holder, self._clock.now())
        if taken:
            logger.info("took over %d run(s) of a scheduler that stopped beating", taken)
            self.wake.set()

    def _shutdown(self) -> None:
        try:
            self._flush_sent()
        except Exception:
            logger.exception("could not record sent runs; their leases will expire")
        self._release_pending()

    # --- one thread (tests on a fake clock) ---------------------------------------------

    def tick(self) -> float:
        """Claim what is due soon, publish what is due now; return how long to sleep."""
        self._claim_if_due()
        while (head := self._pending.head()) is not None:
            if head - self._clock.now() > SYNC_WINDOW or not self._wait_until(head):
                break
            self._publish_burst()
        self._flush_sent()
        now = self._clock.now()
        targets = [self._next_claim] if self._next_claim else []
        if (head := self._pending.head()) is not None:
            targets.append(head - SYNC_WINDOW)
        if not targets:
            return self._poll
        return max(0.0, min(self._poll, min((t - now).total_seconds() for t in targets)))

    def _wait_until(self, at: datetime) -> bool:
        """Sleep until ``at``; False if a wake-up came first."""
        while True:
            remaining = (at - self._clock.now()).total_seconds()
            if remaining <= 0:
                return True
            if self.wake.is_set():
                return False
            self._clock.sleep(min(remaining, _WAKE_CHECK))

    # --- steps ----------------------------------------------------------------------------

    def _claim_if_due(self) -> None:
        now = self._clock.now()
        woken = self.wake.is_set()
        self.wake.clear()
        if woken and len(self._pending):
            self._drop_cancelled()
        if woken or self._next_claim is None or now >= self._next_claim:
            self._claim(now)

    def _claim(self, now: datetime) -> None:
        lead = self._lead_for(now)
        horizon = now + lead
        live = self._live_snapshot(horizon)
        revoke: list[str] = []
        with self._ctx.session() as session:
            release_waiting(session, now)
            self._enqueue(claim_held_runs(session, horizon, now, self.holder))
        started, claimed = time.monotonic(), 0
        while True:
            with self._ctx.session() as session:
                claim = claim_due_jobs(session, horizon, now, self.holder, live=live)
            self._enqueue(claim.runs)  # the publisher may start on a burst's first batches
            claimed += len(claim.runs)
            revoke += claim.revoke
            if not claim.full:
                break
        self._measure(claimed, time.monotonic() - started)
        self._revoke(revoke)
        with self._ctx.session() as session:
            upcoming = next_due_at(session)
        poll_at = now + timedelta(seconds=self._poll)
        self._next_claim = min(upcoming - lead, poll_at) if upcoming is not None else poll_at

    def _lead_for(self, now: datetime) -> timedelta:
        """How far ahead to claim: the usual lead, or longer when so many jobs fall due soon
        that claiming them at this process's measured rate would run past their instant."""
        with self._ctx.session() as session:
            soon = count_due(session, now + BURST_WINDOW)
        needed = timedelta(seconds=soon * _RATE_MARGIN / self.claim_rate)
        return max(self._lead, min(BURST_WINDOW, needed))

    def _measure(self, claimed: int, seconds: float) -> None:
        """Fold a large claim's rate (claim, insert, build messages) into ``claim_rate``: it
        differs tenfold between a busy 2-core box and a server, so a constant would either
        start bursts late or hold them in memory for no reason."""
        if claimed >= _RATE_SAMPLE and seconds > 0:
            self.claim_rate = 0.5 * self.claim_rate + 0.5 * claimed / seconds

    def _claim_delay(self) -> float:
        if self._next_claim is None:
            return 0.0
        return max(0.0, (self._next_claim - self._clock.now()).total_seconds())

    def _live_snapshot(self, horizon: datetime) -> dict[str, set[str]] | None:
        """The live workers and their queues, asked only when a broadcast job is due."""
        if self._live_workers is None:
            return None
        with self._ctx.session() as session:
            if not broadcast_due(session, horizon):
                return None
        for attempt in (1, 2):
            try:
                return self._live_workers()
            except Exception:
                if attempt == 2:
                    logger.exception("could not ask workers for their queues; broadcasting to none")
        return {}

    def _enqueue(self, runs: list[DueRun]) -> None:
        items = []
        for run in runs:
            message = None
            if run.send:
                try:
                    message = self._publisher.prepare(run)
                except Exception:
                    logger.exception("could not build run %s; building it when due", run.run_id)
            items.append(Pending(run.at, run.run_id, run, message))
        self._pending.push(items)

    def _publish_burst(self) -> None:
        """Send every run due now in one burst; on failure put them back to retry shortly."""
        self._sending.set()
        try:
            self._send_due()
        finally:
            self._sending.clear()

    def _send_due(self) -> None:
        batch = self._pending.pop_due(self._clock.now())
        if not batch:
            return
        try:
            messages = [
                p.message if p.message is not None else self._publisher.prepare(p.run)
                for p in batch
                if p.run.send
            ]
            self._publisher.send(messages)
        except Exception:
            logger.exception("could not publish %d run(s); retrying", len(batch))
            retry_at = self._clock.now() + _RETRY_SEND
            self._pending.push([Pending(retry_at, p.run_id, p.run, p.message) for p in batch])
            return
        at = self._clock.now()
        self._sent.put([(p.run, at) for p in batch])

    def _flush_sent(self) -> None:
        sent: list[tuple[DueRun, datetime]] = []
        while True:
            try:
                sent += self._sent.get_nowait()
            except queue.Empty:
                break
        if not sent:
            return
        try:
            with self._ctx.session() as session:
                mark_sent(session, sent)
        except Exception:
            self._sent.put(sent)  # recorded on the next attempt
            raise
        self._note(sent)

    def _drop_cancelled(self) -> None:
        with self._ctx.session() as session:
            gone = not_scheduled(session, self._pending.run_ids())
        if gone and self._pending.drop(gone):
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
        items = self._pending.drain()
        if not items:
            return
        try:
            with self._ctx.session() as session:
                release_claims(session, [p.run_id for p in items])
        except Exception:
            logger.exception("could not release claimed runs; their leases will expire")

    def _note(self, sent: list[tuple[DueRun, datetime]]) -> None:
        for run, at in sent:
            late = (at - run.due).total_seconds() * 1000
            self.lateness_ms.append(late)
            logger.debug("published run %s of job %s, %.1f ms late", run.run_id, run.job_id, late)
        del self.lateness_ms[:-10_000]
