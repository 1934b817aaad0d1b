"""Scheduler burst: N cron jobs all due in the same second, published how fast?

Creates ``--jobs`` cron jobs (6-field cron, all on one second ~``--lead`` s ahead) through the
job service, starts a real ``mainspring scheduler`` and timestamps every message as it lands
in Redis (as ``scheduler_precision.py`` does). Reports when the last one arrived after the due
second, the count (exact, no duplicates) and the scheduler's RSS.

    python bench/scheduler_burst.py --jobs 10000 [--db sqlite]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).parent))
from scheduler_precision import consume, fresh_database, percentile
from sqlalchemy import insert

from mainspring.context import AppContext
from mainspring.db.models import Job
from mainspring.services import jobs as job_service
from mainspring.settings import Settings

RESULTS = Path(__file__).parent / "results"


def create_jobs(ctx: AppContext, count: int, due: datetime, queue: str) -> float:
    """One job through the job service (validation, next fire), then ``count - 1`` copies of
    its row under other names in one bulk insert: the burst is the scheduler's business, not
    the creation's."""
    t0 = time.perf_counter()
    cron = f"{due.second} {due.minute} {due.hour} * * *"
    spec = job_service.JobSpec(
        name="burst-0",
        task="bench.noop",
        queue=queue,
        timezone="UTC",
        trigger={"kind": "cron", "expr": cron},
    )
    with ctx.session() as session:
        first = job_service.create_job(session, spec)
        columns = {
            c.key: getattr(first, c.key) for c in Job.__table__.columns if c.key not in ("id",)
        }
    rows = [{**columns, "name": f"burst-{i}"} for i in range(1, count)]
    with ctx.session() as session:
        for start in range(0, len(rows), 5000):
            session.execute(insert(Job), rows[start : start + 5000])
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--lead", type=float, default=20.0, help="seconds from start to due")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ms-burst-"))
    db_url, drop = fresh_database(args.db, tmp)
    queue = f"burst-{uuid.uuid4().hex[:8]}"
    settings = Settings(data_dir=tmp, database_url=db_url, broker_url=args.broker, secret_key="k")  # noqa: S106
    ctx = AppContext.open(settings)
    created_in = 0.0
    # Create first, then aim the due second past the creation time plus the lead.
    due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=args.lead + args.jobs / 5000)
    created_in = create_jobs(ctx, args.jobs, due, queue)
    if datetime.now(UTC) > due - timedelta(seconds=5):
        raise SystemExit("creating the jobs took too long; raise --lead")
    arrivals: list[tuple[str, str, float]] = []
    stop = threading.Event()
    consumer = threading.Thread(target=consume, args=(args.broker, queue, arrivals, stop))
    consumer.start()
    env = {**os.environ, "MAINSPRING_DATABASE_URL": db_url, "MAINSPRING_BROKER_URL": args.broker,
           "MAINSPRING_DATA_DIR": str(tmp)}  # fmt: skip
    sched = subprocess.Popen([sys.executable, "-m", "mainspring", "scheduler"], env=env)
    peak_rss = 0
    deadline = time.monotonic() + (due - datetime.now(UTC)).total_seconds() + 120
    while len(arrivals) < args.jobs and time.monotonic() < deadline:
        peak_rss = max(peak_rss, psutil.Process(sched.pid).memory_info().rss)
        time.sleep(0.2)
    time.sleep(1.0)  # a late duplicate would land now
    sched.send_signal(signal.SIGTERM)
    sched.wait(timeout=60)
    stop.set()
    consumer.join()
    ctx.close()
    drop()
    due_ts = due.timestamp()
    lateness = sorted((at - due_ts) * 1000 for _, _, at in arrivals)
    result = {
        "bench": "scheduler_burst",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "database": args.db,
        "jobs": args.jobs,
        "created_in_s": round(created_in, 1),
        "received": len(arrivals),
        "distinct": len({rid for rid, _, _ in arrivals}),
        "duplicates": sum(c - 1 for c in Counter(rid for rid, _, _ in arrivals).values()),
        "first_ms": round(lateness[0], 1) if lateness else None,
        "p50_ms": round(percentile(lateness, 50), 1) if lateness else None,
        "p99_ms": round(percentile(lateness, 99), 1) if lateness else None,
        "last_ms": round(lateness[-1], 1) if lateness else None,
        "peak_rss_mb": round(peak_rss / 2**20),
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"scheduler_burst-{args.db}-{args.jobs}-{int(time.time())}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    for key, value in result.items():
        print(f"{key:<14} {value}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
