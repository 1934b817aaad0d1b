"""Every console page, timed server-side, with a million runs stored in PostgreSQL.

Fills a fresh database with ``bench/runs_queries.py``'s loader (1,000 jobs, 20 workers, 30
days of runs, ``COPY``), adds what the other pages show (worker rows, job versions, alert
rules and alerts, audit entries, a workflow run, users and tokens), logs in as an admin, then
requests each page ``--repeat`` times (a random job, run, worker… each time) through the
console's ASGI app in-process. The time is taken inside the app — from the request reaching
it to the last byte of the answer — so the client's own work is not counted.

    python bench/console_pages.py --runs 1000000 [--repeat 50] [--keep]

Prints a table and writes ``bench/results/console_pages.json``. Target: p95 < 200 ms each.
The queues page asks the broker (Redis, ``--broker``) for lengths; it is timed too.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from mainspring.alerts import store
from mainspring.alerts.config import ChannelKind, RuleKind
from mainspring.alerts.delivery import raise_alert
from mainspring.api.app import create_app
from mainspring.context import AppContext
from mainspring.core.states import Role
from mainspring.db.models import Job, Run, Worker
from mainspring.services.audit import Actor
from mainspring.services.auth import create_api_token
from mainspring.services.job_queries import lock_job
from mainspring.services.jobs import JobSpec, definition, update_job
from mainspring.services.users import create_user
from mainspring.settings import Settings

sys.path.insert(0, str(Path(__file__).parent))
from runs_queries import (  # the bench directory is not a package
    NOW,
    TASKS,
    WORKERS,
    add_jobs,
    drop_database,
    fresh_database,
    load_runs,
)

RESULTS = Path(__file__).parent / "results" / "console_pages.json"
DB_URL = "postgresql+psycopg://postgres@127.0.0.1/{}"
PASSWORD = "bench-password-1"  # noqa: S105 - a throwaway database
TARGET_P95_MS = 200.0
ACTOR = Actor("bench", "127.0.0.1")


class ServerTimer:
    """ASGI wrapper: milliseconds from a request reaching the app to its last body byte."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.last_ms = 0.0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def timed_send(message: Any) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.last_ms = (time.perf_counter() - start) * 1000

        await self.app(scope, receive, timed_send)


def add_extras(ctx: AppContext, job_ids: list[int]) -> None:
    """Rows for the pages beyond jobs and runs: workers, versions, alerts, users, audit."""
    with ctx.session() as s:
        for n in range(WORKERS):
            s.add(Worker(hostname=f"worker{n}@host{n}", status="online", queues=["q0", "q1"],
                         registered_tasks=[f"bench.task{t}" for t in range(TASKS)],
                         concurrency=4, active=1, processed=50_000, software={},
                         capabilities={}, first_seen_at=NOW, last_heartbeat_at=NOW,
                         updated_at=NOW))  # fmt: skip
        admin = create_user(s, "bench-admin", PASSWORD, Role.ADMIN, actor=ACTOR)
        for n in range(30):
            user = create_user(s, f"user{n}", PASSWORD, Role.VIEWER, actor=ACTOR)
            create_api_token(s, user, f"token {n}")
        create_api_token(s, admin, "bench")
    for job_id in job_ids[:200]:  # versions and audit entries: five edits each
        for n in range(5):
            with ctx.session() as s:
                job = lock_job(s, job_id)
                spec = JobSpec(**{**definition(job), "description": f"edit {n}"})
                update_job(s, job, spec, audit=ACTOR)
    with ctx.session() as s:
        hook = store.create_channel(s, ACTOR, "hook", ChannelKind.WEBHOOK,
                                    {"url": "https://hooks.example/x"})  # fmt: skip
        rules = [
            store.create_rule(s, ACTOR, store.RuleSpec(name=f"rule {n}", kind=RuleKind.RUN_FAILED,
                                                       channel_ids=[hook.id], cooldown_s=0))
            for n in range(10)
        ]  # fmt: skip
        for n in range(2000):
            raise_alert(s, rules[n % 10], f"k{n}", {"subject": f"alert {n}"}, NOW)


def add_workflow(ctx: AppContext) -> str:
    """A finished-looking workflow run of a chain of a group and a step."""
    flow = {"flow": {"chain": [{"group": [{"task": "bench.task0"}, {"task": "bench.task1"}]},
                               {"task": "bench.task2"}]}}  # fmt: skip
    with ctx.session() as s:
        if s.get(Run, "bench-workflow") is not None:
            return "bench-workflow"
        s.add(Run(id="bench-workflow", task="mainspring.workflow", kwargs={"definition": flow},
                  args=[], options={}, state="STARTED", trigger="api", attempt=0,
                  created_at=NOW, updated_at=NOW, log_bytes=0, log_truncated=False))  # fmt: skip
    return "bench-workflow"


def sample_run_ids(ctx: AppContext) -> list[str]:
    with ctx.session() as s:
        rows = s.execute(text("SELECT id FROM runs TABLESAMPLE SYSTEM (1) LIMIT 500"))
        return [row[0] for row in rows]


def login(client: TestClient) -> None:
    page = client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token is not None
    form = {"username": "bench-admin", "password": PASSWORD, "csrf_token": token.group(1)}
    assert client.post("/login", data=form, follow_redirects=False).status_code == 303


def next_page(client: TestClient, first: str) -> str:
    """The "older" link of a runs page (its keyset cursor)."""
    found = re.search(r'<a href="([^"]+)" rel="next">', client.get(first).text)
    assert found is not None, first
    return found.group(1).replace("&amp;", "&")


def pages(
    client: TestClient, ctx: AppContext, job_ids: list[int]
) -> dict[str, Callable[[random.Random], str]]:
    runs = sample_run_ids(ctx)
    workflow = add_workflow(ctx)
    versioned = job_ids[:200]
    second = next_page(client, "/runs")
    second_of_job = next_page(client, f"/runs?job={job_ids[0]}")
    return {
        "dashboard": lambda r: "/dashboard",
        "jobs (by name)": lambda r: "/jobs",
        "jobs page 5": lambda r: "/jobs?page=5",
        "jobs by next fire": lambda r: "/jobs?sort=next_fire_at",
        "jobs by last state desc": lambda r: "/jobs?sort=-last_state&page=3",
        "jobs search": lambda r: f"/jobs?q=job-0{r.randrange(10)}",
        "job detail": lambda r: f"/jobs/{r.choice(job_ids)}",
        "job version": lambda r: f"/jobs/{r.choice(versioned)}/versions/{r.randrange(1, 6)}",
        "job form (new)": lambda r: "/jobs/new",
        "job form (edit)": lambda r: f"/jobs/{r.choice(job_ids)}/edit",
        "runs": lambda r: "/runs",
        "runs page 2": lambda r: second,
        "runs of a job": lambda r: f"/runs?job={r.choice(job_ids)}",
        "runs of a job page 2": lambda r: second_of_job,
        "runs failed": lambda r: "/runs?state=FAILURE",
        "runs of a worker": lambda r: (
            f"/runs?worker=worker{r.randrange(WORKERS)}@host{r.randrange(WORKERS)}"
        ),
        "runs of a task": lambda r: f"/runs?task=bench.task{r.randrange(TASKS)}",
        "run detail": lambda r: f"/runs/{r.choice(runs)}",
        "workflow run": lambda r: f"/runs/{workflow}",
        "workers": lambda r: "/workers",
        "queues": lambda r: "/queues",
        "alerts": lambda r: "/alerts",
        "audit log": lambda r: "/audit",
        "audit of a job": lambda r: f"/audit?object_type=job&object_id={r.choice(versioned)}",
        "users": lambda r: "/users",
        "tokens": lambda r: "/tokens",
        "settings": lambda r: "/settings",
    }


def timed(client: TestClient, timer: ServerTimer, repeat: int,
          url_of: Callable[[random.Random], str]) -> dict[str, float]:  # fmt: skip
    rng = random.Random(11)  # noqa: S311 - test data
    client.get(url_of(rng))  # warm: templates compiled, plans cached
    samples = []
    for _ in range(repeat):
        url = url_of(rng)
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code, response.text[:500])
        samples.append(timer.last_ms)
    samples.sort()
    return {
        "p50_ms": round(statistics.median(samples), 1),
        "p95_ms": round(samples[max(0, int(len(samples) * 0.95) - 1)], 1),
        "max_ms": round(samples[-1], 1),
    }


def measure(ctx: AppContext, settings: Settings, job_ids: list[int], repeat: int) -> dict[str, Any]:
    app = create_app(ctx)
    timer = ServerTimer(app)
    with TestClient(timer) as client:  # type: ignore[arg-type]
        login(client)
        return {name: timed(client, timer, repeat, url_of)
                for name, url_of in pages(client, ctx, job_ids).items()}  # fmt: skip


def report(results: dict[str, Any], runs: int) -> None:
    print(f"\n| page ({runs:,} runs, PostgreSQL) | p50 | p95 | max |\n| --- | --- | --- | --- |")
    for name, r in results.items():
        flag = "" if r["p95_ms"] < TARGET_P95_MS else " **over target**"
        print(f"| {name} | {r['p50_ms']} ms | {r['p95_ms']} ms{flag} | {r['max_ms']} ms |")


def filled(ctx: AppContext, db_name: str, runs: int) -> list[int]:
    """Fill a fresh database; the job ids."""
    job_ids = add_jobs(ctx)
    load_s = load_runs(db_name, runs, job_ids)
    add_extras(ctx, job_ids)
    print(f"loaded {runs:,} runs in {load_s:.0f} s")
    return job_ids


def existing(ctx: AppContext) -> tuple[list[int], int]:
    """The job ids and run count of a database kept by an earlier ``--keep``."""
    with ctx.session() as s:
        job_ids = list(s.scalars(select(Job.id).where(Job.name.like("bench-job-%"))))
        runs = s.scalar(select(func.count(Run.id))) or 0
    return job_ids, int(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--keep", action="store_true", help="leave the database for --database")
    parser.add_argument("--database", help="time a database kept by --keep (its name)")
    args = parser.parse_args()
    db_name, url = (
        (args.database, DB_URL.format(args.database)) if args.database else (fresh_database())
    )
    data_dir = Path(tempfile.gettempdir()) / db_name
    settings = Settings(database_url=url, data_dir=data_dir, broker_url=args.broker,
                        worker_queues=["q0", "q1", "q2", "q3", "q4"])  # fmt: skip
    ctx = AppContext.open(settings)
    try:
        if args.database:
            job_ids, args.runs = existing(ctx)
        else:
            job_ids = filled(ctx, db_name, args.runs)
        results = measure(ctx, settings, job_ids, args.repeat)
    finally:
        ctx.close()
        if args.keep or args.database:
            print(f"kept database: {db_name}")
        else:
            drop_database(db_name)
    report(results, args.runs)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({
        "date": NOW.isoformat(), "machine": platform.node(), "runs": args.runs,
        "repeat": args.repeat, "target_p95_ms": TARGET_P95_MS, "results": results,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
