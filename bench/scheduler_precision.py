"""Scheduler precision: N interval jobs, lateness measured where it matters, at the broker.

A Redis client popping the private queue's list timestamps every task message as it arrives
and compares it with the ``mainspring_scheduled_for`` header: lateness = arrival - due, so it
includes publishing and the broker hop. The scheduler runs as a real ``mainspring scheduler``
process against a fresh PostgreSQL database (or SQLite) and the local Redis.

    python bench/scheduler_precision.py --jobs 100 --every-ms 1000 --duration 60
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mainspring.context import AppContext
from mainspring.services import jobs as job_service
from mainspring.settings import Settings

RESULTS = Path(__file__).parent / "results"


def fresh_database(kind: str, tmp: Path) -> tuple[str, Any]:
    if kind == "sqlite":
        return f"sqlite:///{tmp / 'bench.db'}", lambda: None
    import psycopg

    name = f"ms_bench_{uuid.uuid4().hex[:10]}"
    admin = "postgresql://postgres@127.0.0.1/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return f"postgresql://postgres@127.0.0.1/{name}", drop


def consume(
    broker: str, queue: str, arrivals: list[tuple[str, str, float]], stop: threading.Event
) -> None:
    """Timestamp messages as they land in the queue's Redis list: a blocking pop for the first,
    then the rest of the burst in one ``RPOP key count`` (a kombu consumer takes ~1 ms per
    message, which would measure the consumer, not the scheduler)."""
    import redis

    client = redis.Redis.from_url(broker)
    while not stop.is_set():
        first = client.brpop([queue], timeout=0.2)
        at = time.time()
        if first is None:
            continue
        payloads = [first[1], *(client.rpop(queue, 10_000) or [])]
        for payload in payloads:
            headers = json.loads(payload)["headers"]
            arrivals.append((headers["id"], headers["mainspring_scheduled_for"], at))


def scheduler_lateness(ctx: AppContext, anchor: datetime, end: datetime) -> list[float]:
    """Lateness as the scheduler recorded it (``runs.lateness_ms``: publish - due)."""
    from sqlalchemy import select

    from mainspring.db.models import Run

    with ctx.session() as session:
        rows = session.scalars(
            select(Run.lateness_ms).where(
                Run.scheduled_for >= anchor, Run.scheduled_for <= end, Run.lateness_ms.is_not(None)
            )
        ).all()
    return [float(x) for x in rows]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--every-ms", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=30)
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/15")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ms-bench-"))
    db_url, drop = fresh_database(args.db, tmp)
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    settings = Settings(data_dir=tmp, database_url=db_url, broker_url=args.broker, secret_key="k")  # noqa: S106
    ctx = AppContext.open(settings)
    anchor = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=4)
    trigger = {"kind": "interval", "every_ms": args.every_ms, "anchor": anchor.isoformat()}
    with ctx.session() as session:
        for i in range(args.jobs):
            spec = job_service.JobSpec(
                name=f"bench-{i}", task="bench.noop", queue=queue, timezone="UTC", trigger=trigger
            )
            job_service.create_job(session, spec)
    arrivals: list[tuple[str, str, float]] = []
    stop = threading.Event()
    consumer = threading.Thread(target=consume, args=(args.broker, queue, arrivals, stop))
    consumer.start()
    env = {**os.environ, "MAINSPRING_DATABASE_URL": db_url, "MAINSPRING_BROKER_URL": args.broker,
           "MAINSPRING_DATA_DIR": str(tmp)}  # fmt: skip
    sched = subprocess.Popen([sys.executable, "-m", "mainspring", "scheduler"], env=env)
    end = anchor + timedelta(seconds=args.duration)
    time.sleep(max(0.0, (end - datetime.now(UTC)).total_seconds()) + 1.0)
    sched.send_signal(signal.SIGTERM)
    sched.wait(timeout=30)
    time.sleep(1.0)
    stop.set()
    consumer.join()
    in_window = [(rid, due, at) for rid, due, at in arrivals
                 if anchor <= datetime.fromisoformat(due) <= end]  # fmt: skip
    lateness = [(at - datetime.fromisoformat(due).timestamp()) * 1000 for _, due, at in in_window]
    expected = args.jobs * (int((end - anchor).total_seconds() * 1000) // args.every_ms + 1)
    dup = sum(c - 1 for c in Counter(rid for rid, _, _ in in_window).values())
    result = {
        "bench": "scheduler_precision",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "database": args.db,
        "broker": args.broker.split("://")[0],
        "jobs": args.jobs,
        "every_ms": args.every_ms,
        "duration_s": args.duration,
        "expected": expected,
        "received": len(in_window),
        "missed": expected - len({rid for rid, _, _ in in_window}),
        "duplicates": dup,
        "p50_ms": round(statistics.median(lateness), 2) if lateness else None,
        "p99_ms": round(percentile(lateness, 99), 2) if lateness else None,
        "max_ms": round(max(lateness), 2) if lateness else None,
        "min_ms": round(min(lateness), 2) if lateness else None,
    }
    own = scheduler_lateness(ctx, anchor, end)
    result["scheduler_p50_ms"] = round(statistics.median(own), 2) if own else None
    result["scheduler_p99_ms"] = round(percentile(own, 99), 2) if own else None
    result["scheduler_max_ms"] = round(max(own), 2) if own else None
    ctx.close()
    drop()
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"scheduler_precision-{args.db}-{args.every_ms}ms-{int(time.time())}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'metric':<12} value")
    for key in ("database", "jobs", "every_ms", "expected", "received", "missed", "duplicates",
                "p50_ms", "p99_ms", "max_ms", "min_ms", "scheduler_p50_ms", "scheduler_p99_ms",
                "scheduler_max_ms"):  # fmt: skip
        print(f"{key:<12} {result[key]}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
