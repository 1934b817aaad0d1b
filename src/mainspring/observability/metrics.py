"""Prometheus metrics, computed from the database (and broker) at scrape time.

Why not counters in memory: the web app may run as several processes, each would count only
what it saw, and a restart would reset them. The database sees every run, so each scrape
reads it: one ``GROUP BY`` for runs by state, task and queue, and one bounded read of recent
runs for the histograms, both over the last ``window_s`` seconds. Histograms and run counts
therefore describe a sliding window (a gauge in Prometheus terms; use them with ``max``/
``avg_over_time``, not ``rate``). ``RunCollector`` is registered on a registry made per
scrape, so nothing is global.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mainspring.context import AppContext
from mainspring.core.states import RunState, TriggerSource
from mainspring.db.models import AlertDelivery, Job, Run
from mainspring.observability.probe import (
    RECORDER_PREFIX,
    SCHEDULER_PREFIX,
    alive,
    recorder_lag_s,
    worker_counts,
)
from mainspring.services.clock import utcnow
from mainspring.services.queues import known_queues, queue_lengths

WINDOW_S = 3600.0
SAMPLE = 10_000
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)
WAIT_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300)
LATENESS_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 5, 30)


def histogram(
    name: str, doc: str, values: Sequence[float], buckets: Iterable[float]
) -> HistogramMetricFamily:
    """A histogram family from raw values (cumulative counts, ``+Inf`` last)."""
    ordered = sorted(values)
    counts, i = [], 0
    for le in buckets:
        while i < len(ordered) and ordered[i] <= le:
            i += 1
        counts.append((_le(le), float(i)))
    counts.append(("+Inf", float(len(ordered))))
    return HistogramMetricFamily(name, doc, buckets=counts, sum_value=sum(ordered))


def _le(value: float) -> str:
    return repr(float(value))


class RunCollector(Collector):
    """Runs, roles, queues, workers and alerts, as the database and broker see them now."""

    def __init__(self, ctx: AppContext, app: Any = None, window_s: float = WINDOW_S) -> None:
        self._ctx = ctx
        self._app = app
        self._window = timedelta(seconds=window_s)

    def collect(self) -> Iterator[Metric]:
        now = utcnow()
        since = now - self._window
        with self._ctx.session() as session:
            yield self._runs(session, since)
            yield from self._histograms(session, since)
            yield from self._roles(session, now, since)
            yield from self._workers_and_alerts(session)
            queues = list(known_queues(session, self._ctx.settings)) if self._app else []
        yield from self._queues(queues)

    def _runs(self, session: Session, since: datetime) -> Metric:
        family = GaugeMetricFamily(
            "mainspring_runs",
            f"Runs created in the last {self._window.total_seconds():g} s, by state, task, queue",
            labels=["state", "task", "queue"],
        )
        rows = session.execute(
            select(Run.state, Run.task, Run.queue, func.count())
            .where(Run.created_at >= since)
            .group_by(Run.state, Run.task, Run.queue)
        ).all()
        for state, task, queue, count in rows:
            family.add_metric([state, task, queue or ""], float(count))
        return family

    def _histograms(self, session: Session, since: datetime) -> Iterator[Metric]:
        rows = session.execute(
            select(Run.runtime_ms, Run.lateness_ms, Run.sent_at, Run.started_at)
            .where(Run.created_at >= since)
            .order_by(Run.created_at.desc())
            .limit(SAMPLE)
        ).all()
        runtimes = [r[0] / 1000 for r in rows if r[0] is not None]
        lateness = [max(0.0, r[1] / 1000) for r in rows if r[1] is not None]
        waits = [max(0.0, (r[3] - r[2]).total_seconds()) for r in rows if r[2] and r[3]]
        yield histogram(
            "mainspring_run_duration_seconds",
            "Run time of runs created in the window",
            runtimes,
            DURATION_BUCKETS,
        )
        yield histogram(
            "mainspring_run_queue_wait_seconds",
            "Time from publish to start of runs created in the window",
            waits,
            WAIT_BUCKETS,
        )
        yield histogram(
            "mainspring_fire_lateness_seconds",
            "How late scheduled runs created in the window were published",
            lateness,
            LATENESS_BUCKETS,
        )

    def _roles(self, session: Session, now: datetime, since: datetime) -> Iterator[Metric]:
        scheduler = GaugeMetricFamily(
            "mainspring_scheduler_runs",
            "Scheduled fires: due (jobs past their next fire, not claimed yet), claimed "
            "(SCHEDULED runs), published (scheduled runs sent in the window)",
            labels=["stage"],
        )
        due = session.scalar(
            select(func.count()).where(Job.enabled.is_(True), Job.next_fire_at <= now)
        )
        claimed = session.scalar(select(func.count()).where(Run.state == RunState.SCHEDULED.value))
        published = session.scalar(
            select(func.count()).where(
                Run.trigger == TriggerSource.SCHEDULE.value, Run.sent_at >= since
            )
        )
        for stage, value in (("due", due), ("claimed", claimed), ("published", published)):
            scheduler.add_metric([stage], float(value or 0))
        yield scheduler
        roles = GaugeMetricFamily(
            "mainspring_roles_alive", "Processes with a live heartbeat, by role", labels=["role"]
        )
        roles.add_metric(["scheduler"], float(len(alive(session, SCHEDULER_PREFIX, now))))
        roles.add_metric(["recorder"], float(len(alive(session, RECORDER_PREFIX, now))))
        yield roles
        lag = recorder_lag_s(session, now)
        yield GaugeMetricFamily(
            "mainspring_recorder_lag_seconds",
            "90th percentile of end-of-run write delay over the last minute (0 when idle)",
            value=lag or 0.0,
        )

    def _workers_and_alerts(self, session: Session) -> Iterator[Metric]:
        counts = worker_counts(session)
        workers = GaugeMetricFamily(
            "mainspring_workers", "Known workers by status", labels=["status"]
        )
        workers.add_metric(["online"], float(counts.online))
        workers.add_metric(["offline"], float(counts.offline))
        yield workers
        found = session.execute(
            select(AlertDelivery.state, func.count()).group_by(AlertDelivery.state)
        )
        rows: dict[str, int] = dict(found.all())
        yield CounterMetricFamily(
            "mainspring_alerts_sent", "Alert deliveries sent", value=float(rows.get("sent", 0))
        )
        deliveries = GaugeMetricFamily(
            "mainspring_alert_deliveries", "Alert deliveries by state", labels=["state"]
        )
        for state in ("pending", "sent", "failed"):
            deliveries.add_metric([state], float(rows.get(state, 0)))
        yield deliveries

    def _queues(self, names: list[str]) -> Iterator[Metric]:
        if self._app is None or not names:
            return
        up = GaugeMetricFamily("mainspring_broker_up", "1 when the broker answered this scrape")
        try:
            _kind, lengths = queue_lengths(self._app, names)
        except Exception:
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        family = GaugeMetricFamily(
            "mainspring_queue_length", "Messages waiting in each known queue", labels=["queue"]
        )
        for q in lengths:
            if q.messages is not None:
                family.add_metric([q.name], float(q.messages))
        yield family


def render(ctx: AppContext, app: Any = None, window_s: float = WINDOW_S) -> bytes:
    """The text exposition format, from a registry made for this scrape only."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RunCollector(ctx, app, window_s))
    return generate_latest(registry)
