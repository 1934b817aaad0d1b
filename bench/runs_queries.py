"""Run-history queries at a million stored runs, on PostgreSQL.

Fills a fresh database (migrated by Mainspring) with ``--runs`` runs over 1,000 jobs, 20
workers, 10 tasks and 30 days (90 % SUCCESS, 6 % FAILURE, the rest other states), loaded with
``COPY``, then times the list queries the API and console run, through the same service
function (``services.runs.list_runs``), each ``--repeat`` times with a random job/worker/task:

- newest 50 runs of a job, and its second page (keyset cursor);
- newest 50 failures, overall and of one job;
- newest 50 runs overall, of a worker, of a task;
- newest 50 runs of the last hour.

    python bench/runs_queries.py --runs 1000000 [--keep]

Prints a table and writes ``bench/results/runs_queries.json``. ``--keep`` leaves the database
(its URL is printed) for other benchmarks, e.g. the console pages.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from mainspring.context import AppContext
from mainspring.db.models import Job
from mainspring.services.runs import RunFilter, list_runs
from mainspring.settings import Settings

RESULTS = Path(__file__).parent / "results" / "runs_queries.json"
ADMIN_URL = "postgresql://postgres@127.0.0.1/postgres"
JOBS, WORKERS, TASKS, QUEUES = 1000, 20, 10, 5
DAYS = 30
NOW = datetime.now(UTC).replace(microsecond=0)
RUN_COLUMNS = (
    "id, job_id, task, args, kwargs, options, queue, worker, state, attempt, trigger, "
    "created_at, sent_at, started_at, finished_at, updated_at, runtime_ms, log_bytes, "
    "log_truncated"
)


def fresh_database() -> tuple[str, str]:
    name = f"ms_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, f"postgresql+psycopg://postgres@127.0.0.1/{name}"


def drop_database(name: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def add_jobs(ctx: AppContext) -> list[int]:
    with ctx.session() as session:
        for i in range(JOBS):
            session.add(
                Job(
                    name=f"bench-job-{i:04d}",
                    task=f"bench.task{i % TASKS}",
                    trigger_kind="cron",
                    trigger={"kind": "cron", "expr": "*/5 * * * *"},
                    timezone="UTC",
                    queue=f"q{i % QUEUES}",
                    created_at=NOW,
                    updated_at=NOW,
                )
            )
    with ctx.session() as session:
        return [job.id for job in session.query(Job).order_by(Job.id)]


def run_rows(count: int, job_ids: list[int]) -> Any:
    """Rows in COPY text form, oldest first (as a real table fills)."""
    rng = random.Random(7)  # noqa: S311 - test data
    span = DAYS * 86_400
    for n in range(count):
        created = NOW - timedelta(seconds=span * (1 - n / count))
        roll = rng.random()
        state = "SUCCESS" if roll < 0.90 else "FAILURE" if roll < 0.96 else "REVOKED"
        if n > count - 200:
            state = rng.choice(["STARTED", "SENT", "RECEIVED"])
        job = rng.choice(job_ids) if rng.random() < 0.95 else None
        task = f"bench.task{(job or rng.randrange(TASKS)) % TASKS}"
        started = created + timedelta(milliseconds=rng.randrange(1, 500))
        finished = started + timedelta(milliseconds=rng.randrange(5, 5000))
        yield (
            str(uuid.UUID(int=rng.getrandbits(128))),
            job,
            task,
            "[1, 2]",
            "{}",
            "{}",
            f"q{n % QUEUES}",
            f"worker{rng.randrange(WORKERS)}@host{rng.randrange(WORKERS)}",
            state,
            0,
            "schedule" if job else "external",
            created,
            created,
            started,
            finished,
            finished,
            (finished - started).total_seconds() * 1000,
            0,
            False,
        )


def load_runs(db_name: str, count: int, job_ids: list[int]) -> float:
    t0 = time.perf_counter()
    with psycopg.connect(f"postgresql://postgres@127.0.0.1/{db_name}") as conn:
        with conn.cursor().copy(f"COPY runs ({RUN_COLUMNS}) FROM STDIN") as copy:
            for row in run_rows(count, job_ids):
                copy.write_row(row)
        conn.execute("ANALYZE runs")
    return time.perf_counter() - t0


def timed(ctx: AppContext, repeat: int, make: Callable[[random.Random], Any]) -> dict[str, float]:
    rng = random.Random(11)  # noqa: S311 - test data
    samples = []
    for _ in range(repeat):
        flt, cursor = make(rng)
        with ctx.session() as session:
            t0 = time.perf_counter()
            rows, _next = list_runs(session, flt, limit=50, cursor=cursor)
            samples.append((time.perf_counter() - t0) * 1000)
        assert rows or flt.job_id is not None, "a query returned nothing"
    samples.sort()
    return {
        "p50_ms": round(statistics.median(samples), 2),
        "p95_ms": round(samples[int(len(samples) * 0.95) - 1], 2),
        "max_ms": round(samples[-1], 2),
    }


def second_page(ctx: AppContext, job_ids: list[int]) -> Callable[[random.Random], Any]:
    def make(rng: random.Random) -> Any:
        flt = RunFilter(job_id=rng.choice(job_ids))
        with ctx.session() as session:
            _rows, cursor = list_runs(session, flt, limit=50)
        return flt, cursor

    return make


def scenarios(ctx: AppContext, job_ids: list[int]) -> dict[str, Callable[[random.Random], Any]]:
    hour_ago = NOW - timedelta(hours=1)
    return {
        "newest 50 of a job": lambda r: (RunFilter(job_id=r.choice(job_ids)), None),
        "second page of a job": second_page(ctx, job_ids),
        "newest 50 failures": lambda r: (RunFilter(state="FAILURE"), None),
        "newest 50 failures of a job": lambda r: (
            RunFilter(job_id=r.choice(job_ids), state="FAILURE"),
            None,
        ),
        "newest 50 overall": lambda r: (RunFilter(), None),
        "newest 50 of a worker": lambda r: (
            RunFilter(worker=f"worker{r.randrange(WORKERS)}@host{r.randrange(WORKERS)}"),
            None,
        ),
        "newest 50 of a task": lambda r: (RunFilter(task=f"bench.task{r.randrange(TASKS)}"), None),
        "newest 50 of the last hour": lambda r: (RunFilter(created_after=hour_ago), None),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    db_name, url = fresh_database()
    ctx = AppContext.open(
        Settings(database_url=url, data_dir=Path(tempfile.gettempdir()) / db_name)
    )
    try:
        job_ids = add_jobs(ctx)
        load_s = load_runs(db_name, args.runs, job_ids)
        print(f"loaded {args.runs:,} runs in {load_s:.0f} s")
        results = {
            name: timed(ctx, args.repeat, make) for name, make in scenarios(ctx, job_ids).items()
        }
    finally:
        ctx.close()
        if args.keep:
            print(f"kept database: {url}")
        else:
            drop_database(db_name)
    print(
        f"\n| query ({args.runs:,} runs, PostgreSQL) | p50 | p95 | max |\n| --- | --- | --- | --- |"
    )
    for name, r in results.items():
        print(f"| {name} | {r['p50_ms']} ms | {r['p95_ms']} ms | {r['max_ms']} ms |")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "date": NOW.isoformat(),
                "machine": platform.node(),
                "runs": args.runs,
                "repeat": args.repeat,
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
