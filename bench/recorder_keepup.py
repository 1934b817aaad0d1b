"""Recorder keep-up: real ``mainspring worker`` processes run trivial tasks at a fixed rate
while ``mainspring recorder`` records them in PostgreSQL; how far behind is the history?

A fresh PostgreSQL database; the recorder and ``--workers`` workers (prefork, ``-c 2``) as
separate processes; this process publishes ``--rate`` tasks per second for ``--seconds``,
paced, while a thread polls the runs table every 50 ms. Lag of a run = when the poll first saw
it final - when its task finished (the ``task-succeeded`` time). Also reported: the rate the workers
actually executed at, whether every run ended final, and the CPU seconds each process used
(the recorder's CPU per event is the contention-proof figure; the machine is shared).

    python bench/recorder_keepup.py --rate 500 --seconds 20 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import select

from mainspring.context import AppContext
from mainspring.core.states import RunState
from mainspring.db.models import Run
from mainspring.settings import Settings
from mainspring.worker.app import make_celery

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from recorder_throughput import drop_database, fresh_database  # noqa: E402

RESULTS = HERE / "results" / "recorder_keepup.json"
POLL_S = 0.05
EVENTS_PER_RUN = 4  # sent, received, started, succeeded
WORKER_ARGS = ["worker", "-P", "prefork", "-I", "recorder_tasks", "-l", "WARNING"]


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("MAINSPRING_")}
    full.update(env, PYTHONPATH=str(HERE))
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "mainspring", *args],
            env=full,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(proc: subprocess.Popen[bytes]) -> float:
    """Stop a process tree we started; returns the CPU seconds it (and children) used."""
    try:
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        cpu = sum(sum(p.cpu_times()[:2]) for p in tree)
    except psutil.NoSuchProcess:
        tree, cpu = [], 0.0
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for child in tree[1:]:
        if child.is_running():
            child.kill()
    return cpu


def cpu_of(proc: subprocess.Popen[bytes]) -> float:
    tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    return sum(sum(p.cpu_times()[:2]) for p in tree)


def wait_workers(app: Any, names: list[str], deadline: float = 60.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        replies = app.control.ping(destination=names, timeout=1.0) or []
        if len(replies) == len(names):
            return
    raise SystemExit(f"workers {names} did not come up within {deadline:.0f} s")


def publish(app: Any, rate: float, seconds: float) -> tuple[list[str], float]:
    """Send ``rate`` tasks per second, paced in 10 ms slices; returns ids and real seconds."""
    total = int(rate * seconds)
    ids: list[str] = []
    start = time.perf_counter()
    with app.producer_or_acquire() as producer:
        while len(ids) < total:
            due = min(total, int((time.perf_counter() - start) * rate) + 1)
            while len(ids) < due:
                run_id = uuid.uuid4().hex
                app.send_task("bench.trivial", args=[len(ids)], task_id=run_id, producer=producer)
                ids.append(run_id)
            time.sleep(0.01)
    return ids, time.perf_counter() - start


class Watcher(threading.Thread):
    """Polls, while tasks are being published, for runs that turned final: id -> (finished,
    first seen) epochs. Only rows updated lately are read, so a poll stays cheap."""

    def __init__(self, ctx: AppContext) -> None:
        super().__init__(name="watcher", daemon=True)
        self.ctx = ctx
        self.seen: dict[str, tuple[float, float]] = {}
        self.expected: int | None = None
        self.deadline = float("inf")
        self.done = threading.Event()

    def run(self) -> None:
        final = [s.value for s in RunState if s.is_final]
        since = datetime.now(UTC) - timedelta(seconds=60)
        while not self.done.is_set():
            poll_start = time.time()
            with self.ctx.session() as session:
                rows = session.execute(
                    select(Run.id, Run.finished_at).where(
                        Run.state.in_(final), Run.task == "bench.trivial", Run.updated_at >= since
                    )
                ).all()
            since = datetime.fromtimestamp(poll_start - 5.0, UTC)  # commits lag updated_at
            for run_id, finished in rows:
                if run_id not in self.seen and finished is not None:
                    self.seen[run_id] = (finished.timestamp(), poll_start)
            if self.expected is not None and (
                len(self.seen) >= self.expected or time.monotonic() > self.deadline
            ):
                self.done.set()
            time.sleep(POLL_S)


def run_bench(args: argparse.Namespace, db: str, logs: Path) -> dict[str, Any]:
    names = [f"keepup{i}-{uuid.uuid4().hex[:4]}@bench" for i in range(args.workers)]
    queue = f"keepup-{uuid.uuid4().hex[:8]}"  # a queue of its own: tests may share the broker
    env = {
        "MAINSPRING_DEFAULT_QUEUE": queue,
        "MAINSPRING_DATABASE_URL": f"postgresql://postgres@127.0.0.1/{db}",
        "MAINSPRING_BROKER_URL": args.broker,
        "MAINSPRING_RESULT_BACKEND": args.backend,
        "MAINSPRING_SECRET_KEY": "bench",
    }
    settings = Settings(
        database_url=env["MAINSPRING_DATABASE_URL"],
        broker_url=args.broker,
        result_backend=args.backend,
        default_queue=queue,
        secret_key="bench",  # noqa: S106 (unused here)
    )
    ctx = AppContext.open(settings)
    app = make_celery(settings)
    recorder = start(["recorder"], env, logs / "recorder.log")
    workers = [
        start(
            [*WORKER_ARGS, "-Q", queue, "-c", str(args.concurrency), "-n", name],
            env,
            logs / f"{name}.log",
        )
        for name in names
    ]
    try:
        wait_workers(app, names)
        time.sleep(2.0)  # the recorder's queue is declared and its first inspection done
        cpu0 = {"recorder": cpu_of(recorder), "workers": sum(cpu_of(w) for w in workers)}
        watcher = Watcher(ctx)
        watcher.start()
        ids, publish_s = publish(app, args.rate, args.seconds)
        watcher.deadline = time.monotonic() + args.deadline
        watcher.expected = len(ids)
        watcher.done.wait()
        watcher.join()
        seen = {k: v for k, v in watcher.seen.items() if k in set(ids)}
        cpu = {
            "recorder": cpu_of(recorder) - cpu0["recorder"],
            "workers": sum(cpu_of(w) for w in workers) - cpu0["workers"],
        }
    finally:
        for proc in [*workers, recorder]:
            stop(proc)
        app.close()
        ctx.close()
    return summarize(args, ids, seen, publish_s, cpu)


def summarize(
    args: argparse.Namespace,
    ids: list[str],
    seen: dict[str, tuple[float, float]],
    publish_s: float,
    cpu: dict[str, float],
) -> dict[str, Any]:
    lags = sorted(max(0.0, s - f) for f, s in seen.values())
    finished = sorted(f for f, _ in seen.values())
    executed_s = finished[-1] - finished[0] if len(finished) > 1 else float("nan")
    events = len(ids) * EVENTS_PER_RUN

    def pct(p: float) -> float:
        return lags[min(len(lags) - 1, int(p * len(lags)))] if lags else float("nan")

    return {
        "tasks": len(ids),
        "target_rate": args.rate,
        "published_rate": len(ids) / publish_s,
        "executed_rate": len(finished) / executed_s if executed_s else float("nan"),
        "runs_final": len(seen),
        "all_final": len(seen) == len(ids),
        "lag_p50_s": pct(0.50),
        "lag_p99_s": pct(0.99),
        "lag_max_s": lags[-1] if lags else float("nan"),
        "lag_mean_s": statistics.fmean(lags) if lags else float("nan"),
        "recorder_cpu_s": cpu["recorder"],
        "recorder_cpu_us_per_event": cpu["recorder"] / events * 1e6,
        "workers_cpu_s": cpu["workers"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--backend", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--deadline", type=float, default=180, help="seconds to wait for runs")
    args = parser.parse_args()
    db = fresh_database()
    logs = Path(tempfile.mkdtemp(prefix="keepup-"))
    try:
        row = run_bench(args, db, logs)
    finally:
        drop_database(db)
    for key, value in row.items():
        print(f"{key:<28} {value:.3f}" if isinstance(value, float) else f"{key:<28} {value}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "bench": "recorder_keepup",
                "broker": args.broker.split("@")[-1],
                "workers": args.workers,
                "concurrency": args.concurrency,
                "python": sys.version.split()[0],
                "machine": platform.platform(),
                "cpus": os.cpu_count(),
                "logs": str(logs),
                "row": row,
            },
            indent=2,
        )
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
