"""Worker overhead: trivial tasks per second on ``mainspring worker`` (guard, tracking, log
capture, events) against a bare Celery worker running the same task, side by side in one run.

Each round fills a fresh queue with ``--tasks`` messages while no worker runs, starts one
worker (prefork, ``--concurrency``), and measures from the first task's start to the last
one's (each task pushes its timestamp to a Redis list). Rounds alternate bare / mainspring so
that load from elsewhere hits both alike; the table shows each round and the medians.

    python bench/worker_overhead.py --tasks 5000 --rounds 3 --broker redis://127.0.0.1:6379/12
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import redis
from celery import Celery

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "worker_overhead.json"


def fill(broker: str, queue: str, key: str, count: int) -> None:
    app = Celery("filler", broker=broker)
    with app.producer_or_acquire() as producer:
        for _ in range(count):
            app.send_task("bench.noop", args=[key], queue=queue, producer=producer)
    app.close()


def worker_command(kind: str, queue: str, concurrency: int) -> list[str]:
    if kind == "bare":
        return [
            sys.executable, "-m", "celery", "-A", "overhead_tasks", "worker", "-Q", queue,
            "-c", str(concurrency), "-P", "prefork", "-n", f"bare-{queue}@bench",
            "--without-mingle", "--without-gossip", "-l", "WARNING",
        ]  # fmt: skip
    return [
        sys.executable, "-m", "mainspring", "worker", "-Q", queue, "-c", str(concurrency),
        "-P", "prefork", "-n", f"ms-{queue}@bench", "-I", "overhead_tasks", "-l", "WARNING",
    ]  # fmt: skip


def one_round(kind: str, broker: str, tasks: int, concurrency: int) -> float:
    queue, key = f"bench-{uuid.uuid4().hex[:8]}", f"bench:overhead:{uuid.uuid4().hex}"
    counter = redis.Redis.from_url(broker)
    fill(broker, queue, key, tasks)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAINSPRING_")}
    data_dir = tempfile.mkdtemp(prefix="ms-overhead-")
    env.update(
        BENCH_BROKER=broker,
        BENCH_COUNTER=broker,
        BENCH_QUEUE=queue,
        PYTHONPATH=str(HERE),
        MAINSPRING_BROKER_URL=broker,
        MAINSPRING_DATA_DIR=data_dir,
    )
    proc = subprocess.Popen(
        worker_command(kind, queue, concurrency),
        env=env,
        cwd=HERE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 600
        while counter.llen(key) < tasks:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{kind} worker stopped or stalled")
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    stamps = sorted(float(x) for x in counter.lrange(key, 0, -1))
    counter.delete(key)
    return (tasks - 1) / (stamps[-1] - stamps[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/12")
    args = parser.parse_args()
    rates: dict[str, list[float]] = {"bare": [], "mainspring": []}
    for n in range(args.rounds):
        for kind in ("bare", "mainspring"):
            rate = one_round(kind, args.broker, args.tasks, args.concurrency)
            rates[kind].append(rate)
            print(f"round {n + 1}: {kind:10s} {rate:8.0f} tasks/s", flush=True)
    bare, ours = statistics.median(rates["bare"]), statistics.median(rates["mainspring"])
    print("\n| worker | tasks/s (median) | rounds |\n| --- | --- | --- |")
    print(f"| bare Celery | {bare:.0f} | {', '.join(f'{r:.0f}' for r in rates['bare'])} |")
    print(
        f"| mainspring worker | {ours:.0f} | {', '.join(f'{r:.0f}' for r in rates['mainspring'])} |"
    )
    print(f"\nmainspring / bare = {ours / bare:.0%}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "date": datetime.now(UTC).isoformat(),
                "machine": platform.node(),
                "tasks": args.tasks,
                "concurrency": args.concurrency,
                "broker": args.broker.split("@")[-1],
                "rates": rates,
                "ratio": ours / bare,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
