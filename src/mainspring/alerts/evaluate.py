"""The alerts action of the recorder: evaluate every rule, then deliver what is due.

Called from the recorder's maintenance thread every ``interval_s`` (``Alerting.tick``). Run
rules look at runs whose row changed since the last tick (``updated_at`` past a watermark,
with an overlap for transactions that committed late), plus two scans for what did *not*
happen: fires not started within ``grace_s`` of their due instant, and runs still running
past ``max_duration_s``. A run is judged once per rule (remembered in memory, and an alert
already stored for it counts after a restart).

Only one recorder evaluates at a time: the holder of the ``alerts`` lease. Each tick also
beats this recorder's liveness row (``observability.probe``), so ``mainspring status`` and
``/metrics`` can tell that a recorder is alive.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mainspring.alerts.config import RUN_RULES, RuleKind, load_params
from mainspring.alerts.delivery import DeliveryPolicy, deliver_due, raise_alert
from mainspring.alerts.rules import ENDED, in_scope, run_key, run_payload, run_verdict
from mainspring.alerts.system import SystemState, evaluate_system
from mainspring.context import AppContext
from mainspring.core.states import RunState
from mainspring.db.models import Alert, AlertRule, Job, Lease, Run
from mainspring.observability.probe import RECORDER_PREFIX, beat, forget, holder_name
from mainspring.services.clock import utcnow
from mainspring.services.queues import known_queues, queue_lengths

logger = logging.getLogger("mainspring.alerts")

LEASE = "alerts"
BATCH = 500
WAITING = (RunState.SCHEDULED.value, RunState.SENT.value)


@dataclass(frozen=True)
class AlertOptions:
    interval_s: float = 2.0
    lookback_s: float = 300.0  # how far back a fresh evaluator looks
    overlap_s: float = 5.0  # run changes re-read behind the watermark
    delivery: DeliveryPolicy = field(default_factory=DeliveryPolicy)


class Alerting:
    """One per recorder process; ``tick`` never raises for a single rule's trouble."""

    def __init__(
        self,
        ctx: AppContext,
        app: Any = None,
        options: AlertOptions | None = None,
        clock: Callable[[], datetime] = utcnow,
        holder: str | None = None,
    ) -> None:
        self._ctx = ctx
        self._app = app
        self.options = options or AlertOptions()
        self._clock = clock
        self.holder = holder or holder_name()
        now = clock()
        self._watermark = now - timedelta(seconds=self.options.lookback_s)
        self._judged: dict[tuple[int, str], datetime] = {}
        self._system = SystemState(started=now)

    def tick(self) -> int:
        """Beat, evaluate (when holding the lease), deliver; return the alerts raised."""
        now = self._clock()
        ttl = timedelta(seconds=max(3 * self.options.interval_s, 5.0))
        with self._ctx.session() as session:
            beat(session, RECORDER_PREFIX, self.holder, now, ttl)
        if not self._hold_lease(now, ttl):
            return 0
        with self._ctx.session() as session:
            rules = list(session.scalars(select(AlertRule).where(AlertRule.enabled.is_(True))))
        if any(r.kind == RuleKind.QUEUE_LENGTH for r in rules):
            self._system.queue_lengths = self._queue_lengths()
        raised = 0
        if rules:
            with self._ctx.session() as session:
                raised = self.evaluate(session, rules, now)
        deliver_due(self._ctx, self.options.delivery)
        return raised

    def stop(self) -> None:
        with self._ctx.session() as session:
            forget(session, RECORDER_PREFIX, self.holder)

    def _hold_lease(self, now: datetime, ttl: timedelta) -> bool:
        """Take or keep the ``alerts`` lease (compare-and-set); True when this process holds it."""
        try:
            with self._ctx.session() as session:
                done = session.execute(
                    update(Lease)
                    .where(
                        Lease.name == LEASE,
                        or_(Lease.holder == self.holder, Lease.expires_at < now),
                    )
                    .values(holder=self.holder, expires_at=now + ttl)
                )
                if done.rowcount:  # type: ignore[attr-defined]
                    return True
                if session.get(Lease, LEASE) is not None:
                    return False
                session.add(
                    Lease(name=LEASE, holder=self.holder, fencing_token=0, expires_at=now + ttl)
                )
        except IntegrityError:
            return False
        return True

    def _queue_lengths(self) -> dict[str, int | None]:
        if self._app is None:
            return {}
        try:
            with self._ctx.session() as session:
                names = list(known_queues(session, self._ctx.settings))
            _kind, lengths = queue_lengths(self._app, names)
        except Exception as exc:
            logger.warning("alerts could not read queue lengths: %s", exc)
            return {}
        return {q.name: q.messages for q in lengths}

    def evaluate(self, session: Session, rules: list[AlertRule], now: datetime) -> int:
        """Every rule once; run rules over changed runs and the two scans."""
        run_rules = [r for r in rules if RuleKind(r.kind) in RUN_RULES]
        raised = evaluate_system(session, rules, now, self._system)
        if run_rules:
            raised += self._changed_runs(session, run_rules, now)
            raised += self._scans(session, run_rules, now)
        self._forget_old(now)
        return raised

    def _changed_runs(self, session: Session, rules: list[AlertRule], now: datetime) -> int:
        """Runs that ended since the watermark, page by page on ``(updated_at, id)``: one
        recorder flush writes many runs with the same ``updated_at``."""
        since = self._watermark - timedelta(seconds=self.options.overlap_s)
        base = select(Run).where(
            Run.updated_at > since, Run.updated_at <= now, Run.state.in_(ENDED)
        )
        raised, query = 0, base
        while True:
            runs = list(session.scalars(query.order_by(Run.updated_at, Run.id).limit(BATCH)))
            raised += self._judge(session, rules, runs, now, lambda rule, run: True)
            if len(runs) < BATCH:
                break
            last = runs[-1]
            query = base.where(
                or_(
                    Run.updated_at > last.updated_at,
                    and_(Run.updated_at == last.updated_at, Run.id > last.id),
                )
            )
        self._watermark = max(self._watermark, now - timedelta(seconds=self.options.overlap_s))
        return raised

    def _scans(self, session: Session, rules: list[AlertRule], now: datetime) -> int:
        raised = 0
        back = timedelta(seconds=self.options.lookback_s)
        for rule in rules:
            kind, params = RuleKind(rule.kind), load_params(rule.params)
            if kind is RuleKind.FIRE_MISSED:
                due = now - timedelta(seconds=params.grace_s)
                where = [
                    Run.state.in_(WAITING),
                    Run.scheduled_for <= due,
                    Run.scheduled_for > due - back,
                ]
            elif kind is RuleKind.DURATION_EXCEEDED:
                due = now - timedelta(seconds=params.max_duration_s)
                where = [
                    Run.state == RunState.STARTED.value,
                    Run.started_at <= due,
                    Run.started_at > due - back,
                ]
            else:
                continue
            runs = list(session.scalars(select(Run).where(*where).limit(BATCH)))
            raised += self._judge(session, [rule], runs, now, _overdue_subject)
        return raised

    def _judge(
        self,
        session: Session,
        rules: list[AlertRule],
        runs: list[Run],
        now: datetime,
        scan: Callable[[AlertRule, Run], bool | str],
    ) -> int:
        tags = self._tags(session, runs)
        raised = 0
        for run in runs:
            for rule in rules:
                if (rule.id, run.id) in self._judged or not in_scope(rule, run, tags):
                    continue
                self._judged[(rule.id, run.id)] = now
                found = scan(rule, run)
                subject = found if isinstance(found, str) else None
                if found is True:
                    subject = run_verdict(
                        session, RuleKind(rule.kind), load_params(rule.params), run
                    )
                if subject is None or self._already_alerted(session, rule, run):
                    continue
                payload = run_payload(session, run, subject, now)
                alert = raise_alert(session, rule, run_key(run), payload, now, run.id, run.job_id)
                raised += alert is not None
        return raised

    @staticmethod
    def _already_alerted(session: Session, rule: AlertRule, run: Run) -> bool:
        found = session.scalar(
            select(Alert.id).where(Alert.rule_id == rule.id, Alert.run_id == run.id).limit(1)
        )
        return found is not None

    @staticmethod
    def _tags(session: Session, runs: list[Run]) -> dict[int, list[str]]:
        ids = {r.job_id for r in runs if r.job_id is not None}
        if not ids:
            return {}
        rows = session.execute(select(Job.id, Job.tags).where(Job.id.in_(ids))).all()
        return {job_id: list(tags or []) for job_id, tags in rows}

    def _forget_old(self, now: datetime) -> None:
        horizon = now - timedelta(seconds=2 * self.options.lookback_s + 86400)
        if len(self._judged) > 10_000:
            self._judged = {k: v for k, v in self._judged.items() if v > horizon}


def _overdue_subject(rule: AlertRule, run: Run) -> str:
    params = load_params(rule.params)
    if RuleKind(rule.kind) is RuleKind.FIRE_MISSED:
        due = run.scheduled_for.isoformat(timespec="seconds") if run.scheduled_for else "?"
        where = f" on queue {run.queue}" if run.queue else ""
        return (
            f"fire of {run.task} due {due} did not start within {params.grace_s:g} s "
            f"(still {run.state}{where}: is a worker consuming it?)"
        )
    return f"run of {run.task} still running after {params.max_duration_s:g} s"
