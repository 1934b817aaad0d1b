"""The dashboard: what the platform is doing now and over the last 24 hours, at a glance.

Every figure comes from the service functions the API uses (``services.stats``, ``runs``,
``workers``, ``job_queries``), so the page and ``/api/v1/stats`` never disagree. The counts
are grouped by the database (``stats.runs_by_state``), so the page stays fast however many
runs are stored; the chart is SVG drawn by ``console.charts``, without script or inline style.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from mainspring.api.deps import Db
from mainspring.console.charts import stacked_chart
from mainspring.console.deps import CurrentReader
from mainspring.console.render import render
from mainspring.console.runs import job_names
from mainspring.core.states import RunState
from mainspring.services import stats
from mainspring.services.clock import utcnow
from mainspring.services.job_queries import JobFilter, count_jobs
from mainspring.services.runs import RunFilter, list_runs
from mainspring.services.workers import list_workers

router = APIRouter(include_in_schema=False)

WINDOW = timedelta(hours=24)
FAILURES_SHOWN = 10
RUNNING_SHOWN = 20
FAILED_STATES = (RunState.FAILURE.value, RunState.LOST.value, RunState.EXPIRED.value)


def success_rate(counts: dict[str, int]) -> float | None:
    """Succeeded / ended in the window, skipped fires left out (as on a job's page)."""
    ended = sum(n for state, n in counts.items() if _ended(state))
    return counts.get(RunState.SUCCESS.value, 0) / ended if ended else None


def _ended(state: str) -> bool:
    try:
        return RunState(state).is_final and state != RunState.SKIPPED.value
    except ValueError:
        return False


@router.get("/dashboard")
def dashboard(request: Request, db: Db, reader: CurrentReader) -> HTMLResponse:
    """Jobs, the last 24 h of runs by state and by hour, failures, runs in progress, workers
    and the scheduler's lateness."""
    now = utcnow()
    rng = stats.time_range(now - WINDOW, now, "hour")
    totals, buckets = stats.runs_by_state(db, rng, "hour", reader.prefs.timezone)
    since = rng.since
    failures, _ = list_runs(
        db, RunFilter(state=RunState.FAILURE.value, created_after=since), FAILURES_SHOWN
    )
    running, more_running = list_runs(db, RunFilter(state=RunState.STARTED.value), RUNNING_SHOWN)
    workers = list_workers(db)
    context: dict[str, Any] = {
        "jobs_enabled": count_jobs(db, JobFilter(enabled=True)),
        "jobs_paused": count_jobs(db, JobFilter(enabled=False)),
        "totals": totals,
        "states": [s.value for s in RunState if totals.counts.get(s.value)],
        "success_rate": success_rate(totals.counts),
        "failed": sum(totals.counts.get(s, 0) for s in FAILED_STATES),
        "failures": failures,
        "running": running,
        "more_running": more_running is not None,  # the tile says "20+"
        "job_names": job_names(db, failures + running),
        "workers_online": sum(1 for w in workers if w.status == "online"),
        "workers_total": len(workers),
        "lateness": stats.lateness(db, rng),
        "chart": stacked_chart([(start, c.counts) for start, c in buckets]),
        "since": since,
    }
    return render(request, "dashboard.html", context, reader.principal)
