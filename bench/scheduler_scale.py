"""Scheduler at scale: N stored jobs due in the future plus one probe job every second.

Stores ``--jobs`` copies of a daily cron job with their next fires spread over the coming
30 days (one INSERT … SELECT on the server, so loading a million takes seconds), ANALYZEs,
adds a probe job firing every 1 s, then starts a real ``mainspring scheduler`` and reports:

- start: from launching the process to its first claim of a probe fire (a ``runs`` row held
  by its pid), i.e. interpreter start, imports, connections and the first claim query;
- probe lateness as ``scheduler_precision.py`` measures it (arrival in Redis - due), for
  fires due from 2 s after the first claim; missed and duplicated fires over the whole run;
- peak RSS and CPU (% of one core) over the measured window, where only the probe is due.

Run it with ``--jobs 10000`` and ``--jobs 1000000`` to see whether memory grows with jobs.

    python bench/scheduler_scale.py --jobs 1000000 [--db sqlite] [--duration 60]
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
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).parent))
from scheduler_precision import consume, fresh_database, percentile
from sqlalchemy import inspect, text

from mainspring.context import AppContext
from mainspring.services import jobs as job_service
from mainspring.settings import Settings

RESULTS = Path(__file__).parent / "results"
_SPREAD_S = 30 * 86400  # next fires spread over 30 days

_COPY = {
    "postgresql": (
        "INSERT INTO jobs (name, next_fire_at, {cols}) "
        "SELECT 'scale-' || g, t.next_fire_at + make_interval(secs => g % :spread), {tcols} "
        "FROM jobs t, generate_series(1, :count) g WHERE t.name = 'scale-0'"
    ),
    "sqlite": (
        "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < :count) "
        "INSERT INTO jobs (name, next_fire_at, {cols}) "
        "SELECT 'scale-' || n, strftime('%Y-%m-%d %H:%M:%f', t.next_fire_at, "
        "'+' || (n % :spread) || ' seconds'), {tcols} FROM jobs t, g WHERE t.name = 'scale-0'"
    ),
}


def store_jobs(ctx: AppContext, count: int) -> float:
    """One daily job through the job service, then ``count - 1`` copies made by the database."""
    t0 = time.perf_counter()
    spec = job_service.JobSpec(
        name="scale-0",
        task="bench.noop",
        queue="scale-nobody",
        timezone="UTC",
        trigger={"kind": "cron", "expr": "H H * * *"},
    )
    with ctx.session() as session:
        job_service.create_job(session, spec)
    columns = [c["name"] for c in inspect(ctx.engine).get_columns("jobs")]
    copied = [c for c in columns if c not in ("id", "name", "next_fire_at")]
    sql = _COPY[ctx.engine.dialect.name].format(
        cols=", ".join(copied), tcols=", ".join(f"t.{c}" for c in copied)
    )
    with ctx.engine.begin() as conn:
        conn.execute(text(sql), {"count": count - 1, "spread": _SPREAD_S})
    with ctx.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
    return time.perf_counter() - t0


def add_probe(ctx: AppContext, queue: str, anchor: datetime) -> None:
    trigger = {"kind": "interval", "every_ms": 1000, "anchor": anchor.isoformat()}
    spec = job_service.JobSpec(
        name="probe", task="bench.noop", queue=queue, timezone="UTC", trigger=trigger
    )
    with ctx.session() as session:
        job_service.create_job(session, spec)


def first_claim_after(ctx: AppContext, pid: int, deadline: float) -> float | None:
    """Seconds until a run held by scheduler ``pid`` exists (its first claim is done)."""
    t0 = time.perf_counter()
    query = text("SELECT 1 FROM runs WHERE claimed_by LIKE :holder LIMIT 1")
    holder = f"%:{pid}:%"
    while time.monotonic() < deadline:
        with ctx.engine.connect() as conn:
            if conn.execute(query, {"holder": holder}).first() is not None:
                return time.perf_counter() - t0
        time.sleep(0.01)
    return None


def measure(sched: psutil.Process, seconds: float) -> tuple[int, float]:
    """Peak RSS and CPU (% of one core) of the scheduler over ``seconds``."""
    cpu0, t0, peak = sched.cpu_times(), time.monotonic(), 0
    while time.monotonic() - t0 < seconds:
        peak = max(peak, sched.memory_info().rss)
        time.sleep(0.5)
    cpu1 = sched.cpu_times()
    used = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    return peak, 100 * used / (time.monotonic() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/15")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ms-scale-"))
    db_url, drop = fresh_database(args.db, tmp)
    queue = f"scale-{uuid.uuid4().hex[:8]}"
    settings = Settings(data_dir=tmp, database_url=db_url, broker_url=args.broker, secret_key="k")  # noqa: S106
    ctx = AppContext.open(settings)
    sched: subprocess.Popen[bytes] | None = None
    stop = threading.Event()
    consumer = None
    try:
        stored_in = store_jobs(ctx, args.jobs)
        arrivals: list[tuple[str, str, float]] = []
        consumer = threading.Thread(target=consume, args=(args.broker, queue, arrivals, stop))
        consumer.start()
        anchor = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=5)
        add_probe(ctx, queue, anchor)
        env = {**os.environ, "MAINSPRING_DATABASE_URL": db_url,
               "MAINSPRING_BROKER_URL": args.broker, "MAINSPRING_DATA_DIR": str(tmp)}  # fmt: skip
        sched = subprocess.Popen([sys.executable, "-m", "mainspring", "scheduler"], env=env)
        started = first_claim_after(ctx, sched.pid, time.monotonic() + 60)
        # Steady state: fires due from 2 s after the first claim (start-up is reported apart).
        steady = max(anchor, datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2))
        time.sleep(max(0.0, (steady - datetime.now(UTC)).total_seconds()))
        peak, cpu = measure(psutil.Process(sched.pid), args.duration)
        end = datetime.now(UTC) - timedelta(seconds=1)
        time.sleep(1.0)
    finally:
        if sched is not None:
            sched.send_signal(signal.SIGTERM)
            sched.wait(timeout=60)
        stop.set()
        if consumer is not None:
            consumer.join()
        ctx.close()
        drop()
    probe = [(d, at) for _, d, at in arrivals if steady <= datetime.fromisoformat(d) <= end]
    lateness = sorted((at - datetime.fromisoformat(d).timestamp()) * 1000 for d, at in probe)
    expected = int((end - steady).total_seconds()) + 1
    fires = Counter(d for _, d, _ in arrivals if anchor <= datetime.fromisoformat(d) <= end)
    result: dict[str, Any] = {
        "bench": "scheduler_scale",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "database": args.db,
        "jobs": args.jobs,
        "stored_in_s": round(stored_in, 1),
        "start_s": round(started, 2) if started is not None else None,
        "probe_expected": expected,
        "probe_received": len(probe),
        "probe_missed_all": int((end - anchor).total_seconds()) + 1 - len(fires),
        "probe_dup_all": sum(c - 1 for c in fires.values()),
        "p50_ms": round(percentile(lateness, 50), 1) if lateness else None,
        "p99_ms": round(percentile(lateness, 99), 1) if lateness else None,
        "max_ms": round(lateness[-1], 1) if lateness else None,
        "peak_rss_mb": round(peak / 2**20),
        "cpu_pct_of_core": round(cpu, 1),
        "load_avg_1m": round(os.getloadavg()[0], 1),
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"scheduler_scale-{args.db}-{args.jobs}-{int(time.time())}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    for key, value in result.items():
        print(f"{key:<16} {value}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
