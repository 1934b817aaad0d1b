"""Recorder throughput: Celery events persisted per second to PostgreSQL, and their lag.

Two measurements on one fresh PostgreSQL database:

- ``in-process``: events handed straight to ``Recorder.handle`` (folding + batched writes), the
  ceiling of the recorder itself;
- ``via-broker live``: events published on Redis by Celery event dispatchers in 4 processes
  while a recorder thread consumes, as in production; lag is from the last event sent to its
  run's final state being committed;
- ``via-broker backlog``: the same events queued on RabbitMQ while the recorder is stopped,
  then drained: the rate at which the recorder consumes from the broker and persists.

CPU per event (``cpu_us_per_event``: this thread in-process, the recorder's threads in the
backlog) does not depend on what else the machine runs, unlike events/s.

Each run emits sent/received/started/succeeded events plus one ``task-log`` chunk (5 events).

    python bench/recorder_throughput.py --runs 4000 --broker redis://127.0.0.1:6379/9
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import psycopg
from sqlalchemy import func, select

from mainspring.context import AppContext
from mainspring.core.states import RunState
from mainspring.db.models import Run
from mainspring.recorder.service import Recorder, RecorderOptions
from mainspring.settings import Settings
from mainspring.worker.app import make_celery

RESULTS = Path(__file__).parent / "results" / "recorder_throughput.json"
ADMIN_URL = "postgresql://postgres@127.0.0.1/postgres"
PUBLISHERS = 4


def events_for(run_id: str, t0: float) -> list[dict[str, Any]]:
    base = {"uuid": run_id, "hostname": "bench@host"}
    return [
        {**base, "type": "task-sent", "name": "bench.noop", "queue": "default", "timestamp": t0},
        {**base, "type": "task-received", "timestamp": t0 + 0.001, "retries": 0},
        {**base, "type": "task-started", "pid": 1, "timestamp": t0 + 0.002},
        {**base, "type": "task-log", "seq": 0, "text": "hello\n", "timestamp": t0 + 0.002},
        {**base, "type": "task-succeeded", "runtime": 0.001, "timestamp": t0 + 0.003},
    ]


def fresh_database() -> str:
    name = f"ms_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_database(name: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def finished(ctx: AppContext) -> int:
    with ctx.session() as session:
        stmt = select(func.count()).select_from(Run).where(Run.state == RunState.SUCCESS.value)
        return int(session.scalar(stmt) or 0)


def in_process(ctx: AppContext, app: Any, runs: int) -> dict[str, Any]:
    recorder = Recorder(ctx, app)
    events = [e for _ in range(runs) for e in events_for(uuid.uuid4().hex, time.time())]
    cpu = time.process_time()
    start = time.perf_counter()
    for event in events:
        recorder.handle(event)
    recorder.flush()
    elapsed = time.perf_counter() - start
    return {
        "mode": "in-process",
        "events": len(events),
        "seconds": elapsed,
        "cpu_us_per_event": (time.process_time() - cpu) / len(events) * 1e6,
    }


def _publish_part(broker: str, runs: int) -> None:
    from celery import Celery

    app = Celery("bench", broker=broker, set_as_current=False)
    skip = ("type", "hostname", "pid", "timestamp")
    with app.events.default_dispatcher(hostname="bench@host") as dispatcher:
        for _ in range(runs):
            for event in events_for(uuid.uuid4().hex, time.time()):
                dispatcher.send(event["type"], **{k: v for k, v in event.items() if k not in skip})
    app.close()


def publish(broker: str, runs: int, processes: int = PUBLISHERS) -> float:
    """Send the events of ``runs`` runs from several processes (one Python publisher is
    slower than the recorder); return the seconds it took."""
    start = time.perf_counter()
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_publish_part, args=(broker, runs // processes))
        for _ in range(processes)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    return time.perf_counter() - start


def start_recorder(ctx: AppContext, app: Any, node: str) -> tuple[threading.Thread, Any]:
    recorder = Recorder(ctx, app, queue_node=node, options=RecorderOptions(event_queue_ttl=120))
    stop = threading.Event()
    thread = threading.Thread(target=recorder.run, args=(stop,), name="recorder", daemon=True)
    thread.start()
    return thread, stop


def wait_finished(ctx: AppContext, count: int, deadline: float = 120.0) -> int:
    """Wait until ``count`` runs are final (or the deadline passes); return how many are."""
    end = time.monotonic() + deadline
    done = finished(ctx)
    while done < count and time.monotonic() < end:
        time.sleep(0.02)
        done = finished(ctx)
    return done


def via_broker_live(ctx: AppContext, app: Any, runs: int) -> dict[str, Any]:
    """Events published while the recorder runs: the lag after the last one is committed."""
    thread, stop = start_recorder(ctx, app, f"bench-{uuid.uuid4().hex[:8]}")
    time.sleep(1.0)  # let the recorder declare its queue before events are sent
    base = finished(ctx)
    start = time.perf_counter()
    published = publish(app.conf.broker_url, runs)
    sent_last = time.perf_counter()
    persisted = wait_finished(ctx, base + runs) - base
    done = time.perf_counter()
    stop.set()
    thread.join(timeout=30)
    return {
        "mode": "via-broker live",
        "events": runs * 5,
        "seconds": done - start,
        "publish_seconds": published,
        "lag_after_last_event_s": done - sent_last,
        "runs_persisted": persisted,
    }


def via_broker_backlog(ctx: AppContext, app: Any, runs: int) -> dict[str, Any]:
    """Events queued while the recorder was stopped, then drained: its consuming rate."""
    node = f"bench-{uuid.uuid4().hex[:8]}"
    thread, stop = start_recorder(ctx, app, node)
    time.sleep(1.0)  # declare the durable queue, then stop: events wait in it
    stop.set()
    thread.join(timeout=30)
    base = finished(ctx)
    published = publish(app.conf.broker_url, runs)
    start = time.perf_counter()
    before = thread_cpu()
    thread, stop = start_recorder(ctx, app, node)
    persisted = wait_finished(ctx, base + runs) - base
    elapsed = time.perf_counter() - start
    cpu = {name: seconds - before.get(name, 0.0) for name, seconds in thread_cpu().items()}
    stop.set()
    thread.join(timeout=30)
    recorder_cpu = sum(v for k, v in cpu.items() if k.startswith("recorder"))
    return {
        "mode": "via-broker backlog",
        "events": runs * 5,
        "seconds": elapsed,
        "publish_seconds": published,
        "runs_persisted": persisted,
        "cpu_us_per_event": recorder_cpu / (runs * 5) * 1e6,
        "cpu_us_per_event_by_thread": {k: v / (runs * 5) * 1e6 for k, v in cpu.items()},
    }


def thread_cpu() -> dict[str, float]:
    """CPU seconds of this process's threads, by name (the recorder's are ``recorder-*``)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    return {
        names.get(t.id, str(t.id)): t.user_time + t.system_time for t in psutil.Process().threads()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4000)
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--backlog-broker", default="amqp://guest:guest@127.0.0.1:5672//")
    args = parser.parse_args()
    name = fresh_database()
    try:
        settings = Settings(
            database_url=f"postgresql://postgres@127.0.0.1/{name}",
            broker_url=args.broker,
            secret_key="bench",  # noqa: S106 (unused by the recorder)
        )
        ctx = AppContext.open(settings)
        app = make_celery(settings)
        rows = [in_process(ctx, app, args.runs), via_broker_live(ctx, app, args.runs)]
        app.close()
        # Redis fans events out with pub/sub (nothing waits for a stopped consumer), so the
        # backlog is measured on RabbitMQ, where the recorder's queue is durable.
        amqp = make_celery(
            settings.model_copy(
                update={"broker_url": args.backlog_broker, "result_backend": args.broker}
            )
        )
        rows.append(via_broker_backlog(ctx, amqp, args.runs))
        amqp.close()
        ctx.close()
    finally:
        drop_database(name)
    for row in rows:
        row["events_per_s"] = row["events"] / row["seconds"]
    print(
        f"{'mode':<20} {'events':>8} {'seconds':>8} {'events/s':>10} {'lag s':>7} {'CPU µs/ev':>9}"
    )
    for row in rows:
        lag = row.get("lag_after_last_event_s")
        cpu = row.get("cpu_us_per_event")
        print(
            f"{row['mode']:<20} {row['events']:>8} {row['seconds']:>8.2f} "
            f"{row['events_per_s']:>10.0f} {'' if lag is None else f'{lag:>7.2f}':>7} "
            f"{'' if cpu is None else f'{cpu:>9.0f}'}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "bench": "recorder_throughput",
                "runs": args.runs,
                "broker": args.broker.split("@")[-1],
                "backlog_broker": args.backlog_broker.split("@")[-1],
                "python": sys.version.split()[0],
                "machine": platform.platform(),
                "median_events_per_s": statistics.median(r["events_per_s"] for r in rows),
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
