"""The recorder's slow loop: reconcile, find lost runs, inspect workers, apply retention.

Why a second thread: each of these waits on the broker or scans the database, and the event
loop must keep draining events meanwhile. Run changes found here are handed to the event loop
(``Recorder.submit``), so run rows keep a single writer; worker rows and retention deletes are
written here with compare-and-set updates.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from mainspring.context import AppContext
from mainspring.core.states import RunState, WorkerStatus, advances
from mainspring.db.models import Run, Worker
from mainspring.recorder.backend import patch_from_meta
from mainspring.recorder.fold import RunPatch
from mainspring.recorder.registry import inspect_workers, write_inspection
from mainspring.services.clock import utcnow
from mainspring.services.retention import purge

if TYPE_CHECKING:
    from mainspring.recorder.service import Recorder

logger = logging.getLogger("mainspring.recorder")

UNFINISHED = (RunState.SENT, RunState.RECEIVED, RunState.STARTED, RunState.RETRY)
BATCH = 500
EXPIRY_GRACE_S = 5.0  # a worker that got the run in time reports it within this


class Maintenance:
    def __init__(self, ctx: AppContext, app: Any, recorder: Recorder) -> None:
        self._ctx = ctx
        self._app = app
        self._recorder = recorder
        self._opts = recorder.options
        self._started = time.monotonic()

    def run(self, stop: threading.Event) -> None:
        """Each task on its own timer; reconciliation first of all, at start."""
        from mainspring.alerts.delivery import DeliveryPolicy
        from mainspring.alerts.evaluate import Alerting, AlertOptions

        allow = self._ctx.settings.alerts_allow_commands
        options = AlertOptions(delivery=DeliveryPolicy(allow_commands=allow))
        alerting = Alerting(self._ctx, self._app, options)
        due = {"reconcile": 0.0, "inspect": 0.0, "retention": 0.0, "alerts": 0.0}
        intervals = {
            "reconcile": self._opts.reconcile_interval,
            "inspect": self._opts.inspect_interval,
            "retention": self._opts.retention_interval,
            "alerts": alerting.options.interval_s,
        }
        actions = {
            "reconcile": self.reconcile,
            "inspect": lambda: self.inspect(None),
            "retention": self.retention,
            "alerts": alerting.tick,
        }
        while not stop.is_set():
            with self._recorder.new_workers_lock:
                hosts, self._recorder.new_workers = self._recorder.new_workers, set()
            if hosts:
                self._guard("inspect", functools.partial(self.inspect, sorted(hosts)))
            for name, action in actions.items():
                if time.monotonic() >= due[name]:
                    self._guard(name, action)
                    due[name] = time.monotonic() + intervals[name]
            stop.wait(min(0.5, *intervals.values()))

    def _guard(self, name: str, action: Any) -> None:
        try:
            action()
        except Exception:
            logger.exception("recorder %s failed; will try again", name)

    def reconcile(self) -> int:
        """Compare every unfinished run with the result backend; then find lost runs."""
        from mainspring.recorder.service import fetch_metas

        found = 0
        after = ""
        while True:
            with self._ctx.session() as session:
                rows = session.execute(
                    select(Run.id, Run.state, Run.options, Run.sent_at, Run.scheduled_for)
                    .where(Run.state.in_([s.value for s in UNFINISHED]), Run.id > after)
                    .order_by(Run.id)
                    .limit(BATCH)
                ).all()
            if not rows:
                break
            after = rows[-1][0]
            metas = fetch_metas(self._app, [row[0] for row in rows])
            now = utcnow()
            patches = [
                _advancing(row[0], row[1], metas.get(row[0])) or _expired(row, now) for row in rows
            ]
            news = [p for p in patches if p is not None]
            self._recorder.submit(news)
            found += len(news)
        found += self.mark_lost()
        if found:
            logger.info("reconciliation updated %d runs", found)
        return found

    def mark_lost(self) -> int:
        """Runs that were running on a worker now offline end as LOST (unless the backend
        says how they ended). Silence counts only once the recorder has listened long enough
        to have heard a live worker's heartbeat."""
        now = utcnow()
        timeout = self._opts.worker_timeout
        with self._ctx.session() as session:
            if time.monotonic() - self._started >= timeout:
                session.execute(
                    update(Worker)
                    .where(
                        Worker.status == WorkerStatus.ONLINE.value,
                        Worker.last_heartbeat_at < now - timedelta(seconds=timeout),
                    )
                    .values(status=WorkerStatus.OFFLINE.value, updated_at=now)
                )
            rows = session.execute(
                select(Run.id, Run.worker)
                .join(Worker, Worker.hostname == Run.worker)
                .where(
                    Run.state == RunState.STARTED.value,
                    Worker.status == WorkerStatus.OFFLINE.value,
                )
                .limit(BATCH)
            ).all()
        return self._submit_lost([(str(run_id), str(host)) for run_id, host in rows], now)

    def _submit_lost(self, rows: list[tuple[str, str]], now: Any) -> int:
        from mainspring.recorder.service import fetch_metas

        metas = fetch_metas(self._app, [run_id for run_id, _ in rows])
        patches = []
        for run_id, host in rows:
            patch = _advancing(run_id, RunState.STARTED.value, metas.get(run_id))
            if patch is None or patch.state is None or not patch.state.is_final:
                patch = RunPatch(run_id=run_id, state=RunState.LOST)
                patch.values["finished_at"] = now
                patch.values["exception_message"] = f"worker {host} went offline while running"
                logger.warning("run %s lost: worker %s went offline", run_id, host)
            patches.append(patch)
        self._recorder.submit(patches)
        return len(patches)

    def inspect(self, hosts: list[str] | None) -> int:
        """Ask workers (all, or the named new ones) for queues, tasks, pool and counts."""
        infos = inspect_workers(self._app, hosts, self._opts.inspect_timeout)
        if infos:
            with self._ctx.session() as session:
                write_inspection(session, infos, utcnow())
        return len(infos)

    def retention(self) -> int:
        deleted = purge(self._ctx, self._opts.retention, utcnow())
        if deleted:
            logger.info("retention deleted %d runs", deleted)
        return deleted


def _advancing(run_id: str, state: str, meta: dict[str, Any] | None) -> RunPatch | None:
    """The backend's patch for a run, if it moves the run forward."""
    patch = patch_from_meta(run_id, meta) if meta else None
    if patch is None or patch.state is None:
        return None
    return patch if advances(RunState(state), patch.state) else None


def _expired(row: Any, now: datetime) -> RunPatch | None:
    """A run still SENT well past its expiry was dropped unstarted (RabbitMQ discards an
    expired message itself, so no worker ever reports it): it ends EXPIRED."""
    run_id, state, options, sent_at, scheduled_for = row
    expires = (options or {}).get("expires")
    since = scheduled_for or sent_at
    if state != RunState.SENT.value or not expires or since is None:
        return None
    if now < since + timedelta(seconds=float(expires) + EXPIRY_GRACE_S):
        return None
    patch = RunPatch(run_id=run_id, state=RunState.EXPIRED)
    patch.values["finished_at"] = now
    patch.values["exception_message"] = f"not started within its expiry of {expires} s"
    return patch
