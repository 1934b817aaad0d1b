"""Worker overhead: trivial tasks per second on ``mainspring worker`` (guard, tracking, log
capture, events) against a bare Celery worker running the same task, side by side in one run.

Each round fills a fresh queue with ``--tasks`` messages while no worker runs, starts one
worker (prefork, ``--concurrency``), and measures from the first task's start to the last
one's (each task pushes its timestamp to a Redis list). Rounds alternate bare / mainspring so
that load from elsewhere hits both alike; the table shows each round and the medians.

On a shared machine rates swing with the neighbours' load, so each round also reports the CPU
time the worker's main process and its pool children spent per task (read from ``/proc``
between 10 % and 90 % of the queue, so start-up and shutdown do not count): a steadier view
of what each worker costs. The default Redis database is 0: test runs flush the others
(``tests/conftest.py`` gives each pytest process one of 1-15).

    python bench/worker_overhead.py --tasks 5000 --rounds 3 --broker redis://127.0.0.1:6379/0
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
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil
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


@dataclass
class Round:
    rate: float  # tasks/s, first to last execution
    main_ms: float  # CPU ms per task, worker main process
    pool_ms: float  # CPU ms per task, pool children together


def one_round(kind: str, broker: str, tasks: int, concurrency: int) -> Round:
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
        marks = drain(proc, kind, counter, key, tasks)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    stamps = sorted(float(x) for x in counter.lrange(key, 0, -1))
    counter.delete(key)
    (done0, main0, pool0), (done1, main1, pool1) = marks
    done = max(1, done1 - done0)
    return Round(
        rate=(tasks - 1) / (stamps[-1] - stamps[0]),
        main_ms=(main1 - main0) / done * 1000,
        pool_ms=(pool1 - pool0) / done * 1000,
    )


def drain(
    proc: subprocess.Popen[bytes], kind: str, counter: redis.Redis, key: str, tasks: int
) -> list[tuple[int, float, float]]:
    """Wait until every task ran; (tasks done, main CPU s, pool CPU s) at 10 % and 90 %."""
    worker = psutil.Process(proc.pid)
    marks: list[tuple[int, float, float]] = []
    thresholds = [tasks // 10, tasks * 9 // 10]
    deadline = time.monotonic() + 600
    seen = 0
    while (done := int(counter.llen(key))) < tasks:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{kind} worker stopped or stalled")
        if done < seen:
            raise RuntimeError("the bench's keys vanished: something flushed its Redis database")
        seen = done
        if len(marks) < 2 and done >= thresholds[len(marks)]:
            marks.append((done, *cpu_seconds(worker)))
        time.sleep(0.02)
    if len(marks) < 2:
        raise RuntimeError("too few tasks to measure CPU per task (use --tasks 1000 or more)")
    return marks


def cpu_seconds(worker: psutil.Process) -> tuple[float, float]:
    main = worker.cpu_times()
    pool = sum(sum(child.cpu_times()[:2]) for child in worker.children())
    return main.user + main.system, pool


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    rounds: dict[str, list[Round]] = {"bare": [], "mainspring": []}
    for n in range(args.rounds):
        for kind in ("bare", "mainspring"):
            r = one_round(kind, args.broker, args.tasks, args.concurrency)
            rounds[kind].append(r)
            print(
                f"round {n + 1}: {kind:10s} {r.rate:6.0f} tasks/s, CPU per task: "
                f"main {r.main_ms:.2f} ms, pool {r.pool_ms:.2f} ms",
                flush=True,
            )
    rate = {k: statistics.median(r.rate for r in v) for k, v in rounds.items()}
    main_ms = {k: statistics.median(r.main_ms for r in v) for k, v in rounds.items()}
    pool_ms = {k: statistics.median(r.pool_ms for r in v) for k, v in rounds.items()}
    print("\n| worker | tasks/s (median) | rounds | main CPU ms/task | pool CPU ms/task |")
    print("| --- | --- | --- | --- | --- |")
    for kind, label in (("bare", "bare Celery"), ("mainspring", "mainspring worker")):
        each = ", ".join(f"{r.rate:.0f}" for r in rounds[kind])
        print(
            f"| {label} | {rate[kind]:.0f} | {each} | {main_ms[kind]:.2f} | {pool_ms[kind]:.2f} |"
        )
    ratio = rate["mainspring"] / rate["bare"]
    print(
        f"\nmainspring / bare = {ratio:.0%} (rate); main-process CPU per task "
        f"{main_ms['mainspring'] / main_ms['bare']:.0%} of bare"
    )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "date": datetime.now(UTC).isoformat(),
                "machine": platform.node(),
                "load_average": os.getloadavg(),
                "tasks": args.tasks,
                "concurrency": args.concurrency,
                "broker": args.broker.split("@")[-1],
                "rates": {k: [r.rate for r in v] for k, v in rounds.items()},
                "rounds": {k: [asdict(r) for r in v] for k, v in rounds.items()},
                "ratio": ratio,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
