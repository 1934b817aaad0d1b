"""Mainspring side by side with celery beat, django-celery-beat and RedBeat, in one run.

For each system, on the same workloads, with the same broker-side measurement (a Redis client
popping the queue's list and timestamping each message as it lands; ``beat_apps/collect.py``):

- precision: ``--jobs`` jobs every 1 s for ``--duration`` s: fires expected / received,
  missed, duplicates, lateness p50 / p99 / max (how the due instant is known differs per
  system: ``beat_apps/stats.py`` and docs/benchmarks.md say how and what it cannot see);
- burst: ``--burst-jobs`` cron jobs due in the same minute: how many published within 1 s and
  60 s of it, the last one's lateness, the scheduler's peak RSS;
- edit: a dormant job's schedule changed to "every second" through each system's own way
  (django-celery-beat: save the ``PeriodicTask``; RedBeat: ``RedBeatSchedulerEntry.save()``;
  Mainspring: the Python client; celery beat's default scheduler cannot: restart needed), time
  from the save returning to the first fire on the new schedule at the broker. Measured while
  the precision jobs keep the scheduler busy, and again with nothing else scheduled (idle).

Each system gets its own Redis DB (``--redis-dbs``) and uniquely named queues; PostgreSQL
databases are created and dropped by the script, every process it starts is stopped by PID,
also on failure. The comparison packages are bench-only (not Mainspring dependencies):

    .venv/bin/pip install celery-redbeat django-celery-beat
    .venv/bin/python bench/beat_compare.py                      # full: 100 jobs, 30 s, 10,000
    .venv/bin/python bench/beat_compare.py --jobs 20 --duration 10 --burst-jobs 1000 \\
        --systems dcb,mainspring                                # a quick look
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from beat_apps import stats
from beat_apps.beat_systems import CeleryBeatSystem, DjangoCeleryBeatSystem, RedBeatSystem
from beat_apps.collect import Collector, first_after
from beat_apps.mainspring_system import MainspringSystem
from beat_apps.procs import PeakRss, Procs

RESULTS = Path(__file__).parent / "results"
SYSTEMS: dict[str, Any] = {
    "beat": CeleryBeatSystem,
    "dcb": DjangoCeleryBeatSystem,
    "redbeat": RedBeatSystem,
    "mainspring": MainspringSystem,
}
System = CeleryBeatSystem | MainspringSystem


def sleep_until(epoch: float) -> None:
    time.sleep(max(0.0, epoch - time.time()))


def wait_first(collector: Collector, queue: str, timeout: float) -> None:
    """Block until the scheduler's first message on ``queue`` (it is up and publishing)."""
    if first_after(collector, queue, 0.0, timeout) is None:
        raise RuntimeError(f"no message on {queue} within {timeout:.0f} s of starting")


def revert_dormant(system: System, k: int, errors: list[str]) -> None:
    """Put the edited job back to sleep (housekeeping, not measured: retried on failure, and
    each failure is reported)."""
    for _attempt in range(3):
        try:
            system.edit(k, fast=False)
            return
        except Exception as exc:
            errors.append(f"revert: {type(exc).__name__}: {str(exc).splitlines()[0]}")


def edit_trials(
    system: System, collector: Collector, queues: list[str], timeout: float, settle: float
) -> dict[str, Any]:
    """Edit ``edit-<k>`` to every second, wait for its first message, edit it back to dormant.
    A trial that times out ends the series: the scheduler's long sleep would skew the next."""
    latencies: list[float | None] = []
    errors: list[str] = []
    for k, queue in enumerate(queues):
        time.sleep(settle)  # let the scheduler settle (idle: fall asleep) after the last edit
        before = time.time()
        try:
            system.edit(k, fast=True)
        except Exception as exc:  # an edit the system refused: count it, try the next job
            errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
            continue
        saved = time.time()
        hit = first_after(collector, queue, before, timeout)
        if hit is None:
            latencies.append(None)
            break
        due, at = hit
        latencies.append(at - max(saved, due if due is not None else saved))
        revert_dormant(system, k, errors)
    return {**stats.edits(latencies, timeout), "errors": errors}


def run_precision(system: System, args: argparse.Namespace, tag: str) -> dict[str, Any]:
    queue = f"{tag}-prec"
    edit_queues = [f"{tag}-edit-{k}" for k in range(args.edit_trials if system.can_edit else 0)]
    anchor = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    system.setup_precision(queue, args.jobs, anchor, edit_queues)
    collector = system.collector([queue, *edit_queues])
    proc = system.start()
    try:
        # The window opens ``--warmup`` s after the first message: startup is not measured.
        wait_first(collector, queue, args.start_timeout)
        start = datetime.fromtimestamp(math.ceil(time.time() + args.warmup), UTC)
        end = start.timestamp() + args.duration
        sleep_until(end + 1.5)
        out: dict[str, Any] = {"alive": proc.poll() is None}
        if system.can_edit:
            out["edit_busy"] = edit_trials(system, collector, edit_queues, args.edit_timeout, 1.0)
    finally:
        system.procs.stop(proc)
        time.sleep(0.5)
        collector.close()
        system.reset()
    arrivals = [a for a in collector.arrivals() if a.queue == queue]
    out["precision"] = stats.precision(
        arrivals, system.method, args.jobs, start.timestamp(), int(args.duration)
    )
    return out


def run_burst(system: System, args: argparse.Namespace, tag: str) -> dict[str, Any]:
    queue = f"{tag}-burst"
    # The cron minute must be known before the jobs are stored: leave room for storing them.
    ready_by = time.time() + args.lead + args.burst_jobs / system.store_rate
    due = datetime.fromtimestamp(math.ceil(ready_by / 60) * 60, UTC)
    t0 = time.perf_counter()
    system.setup_burst(queue, args.burst_jobs, due)
    setup_s = time.perf_counter() - t0
    collector = system.collector([queue])
    proc = system.start()
    rss = PeakRss(proc.pid)
    try:
        started_ahead = due.timestamp() - time.time()
        deadline = due.timestamp() + args.burst_window
        while collector.count() < args.burst_jobs and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # a late duplicate would land now
        alive = proc.poll() is None
    finally:
        peak = rss.close()
        system.procs.stop(proc)
        collector.close()
        system.reset()
    result = stats.burst(collector.arrivals(), due.timestamp(), args.burst_jobs)
    result["alive"] = alive
    return {**result, "peak_rss_mb": round(peak / 2**20), "setup_s": round(setup_s, 1),
            "started_s_ahead": round(started_ahead, 1), "window_s": args.burst_window}  # fmt: skip


def run_idle_edits(system: System, args: argparse.Namespace, tag: str) -> dict[str, Any]:
    """Only dormant jobs, and a probe due once at start: its message says the scheduler is up,
    after which nothing is due for an hour and the scheduler sleeps as long as it likes."""
    edit_queues = [f"{tag}-idle-{k}" for k in range(args.idle_trials)]
    probe = f"{tag}-probe"
    system.setup_idle(edit_queues, probe)
    collector = system.collector([probe, *edit_queues])
    proc = system.start()
    try:
        wait_first(collector, probe, args.start_timeout)
        time.sleep(args.warmup)
        return edit_trials(system, collector, edit_queues, args.edit_timeout, 3.0)
    finally:
        system.procs.stop(proc)
        collector.close()
        system.reset()


def run_system(key: str, args: argparse.Namespace, tmp: Path, procs: Procs) -> dict[str, Any]:
    db = dict(zip(SYSTEMS, args.redis_dbs.split(","), strict=True))[key]
    broker = f"{args.redis}/{db}"
    tag = f"bc-{key}-{uuid.uuid4().hex[:6]}"
    system = SYSTEMS[key](broker, tmp, procs)
    out: dict[str, Any] = {"name": system.name, "broker_db": int(db), "method": system.method,
                           "load_1m_at_start": round(os.getloadavg()[0], 1)}  # fmt: skip
    phases = {
        "precision": lambda: out.update(run_precision(system, args, tag)),
        "burst": lambda: out.update(burst=run_burst(system, args, tag)),
        "idle": lambda: out.update(edit_idle=run_idle_edits(system, args, tag)),
    }
    try:
        for phase in args.phases.split(","):
            if phase == "idle" and not system.can_edit:
                continue
            try:
                phases[phase]()
            except Exception as exc:  # one failed phase should not lose the others' figures
                out.setdefault("errors", {})[phase] = f"{type(exc).__name__}: {exc}"
                print(f"{key} {phase} failed: {exc}", flush=True)
    finally:
        system.close()
        _drop_queues(broker, tag)
    out["load_1m_at_end"] = round(os.getloadavg()[0], 1)
    return out


def _drop_queues(broker: str, tag: str) -> None:
    """Remove this run's queues (and kombu's bindings naming them) from the Redis DB."""
    import redis

    client = redis.Redis.from_url(broker)
    keys = list(client.scan_iter(match=f"{tag}-*", count=1000))
    if keys:
        client.delete(*keys)
    for binding in client.scan_iter(match=f"_kombu.binding*.{tag}-*"):
        client.delete(binding)


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return (
        f"{value / 1000:.1f} s"
        if value >= 10_000
        else f"{value:.0f} ms"
        if value >= 10
        else f"{value:.1f} ms"
    )


def _edit_cell(edit: dict[str, Any] | None, can_edit: bool) -> str:
    if not can_edit:
        return "restart needed"
    if edit is None:
        return "not run"
    seen = f"{_ms(edit['p50_ms'])} / {_ms(edit['max_ms'])}" if edit["p50_ms"] is not None else ""
    late = f"{edit['timed_out']} of {edit['trials']} > {edit['timeout_s']:.0f} s"
    return f"{seen}{'; ' if seen and edit['timed_out'] else ''}{late if edit['timed_out'] else ''}"


def table(results: dict[str, dict[str, Any]]) -> str:
    head = ["system", "precision received / expected", "missed", "dup", "lateness p50 / p99 / max",
            "burst ≤ 1 s", "burst ≤ 60 s", "burst last", "burst peak RSS", "edit, busy (p50 / max)",
            "edit, idle (p50 / max)"]  # fmt: skip
    rows = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for key, r in results.items():
        p, b = r.get("precision"), r.get("burst")
        can_edit = SYSTEMS[key].can_edit
        cells = [r["name"]]
        if p:
            lat = f"{_ms(p['p50_ms'])} / {_ms(p['p99_ms'])} / {_ms(p['max_ms'])}"
            cells += [
                f"{p['received']} / {p['expected']}",
                str(p["missed"]),
                str(p["duplicates"]),
                lat,
            ]
        else:
            cells += ["-"] * 4
        if b:
            last = _ms(b["last_ms"]) + ("" if b["complete"] else f" ({b['received']} received)")
            cells += [
                f"{b['within_1s']:,} of {b['jobs']:,}",
                f"{b['within_60s']:,}",
                last,
                f"{b['peak_rss_mb']} MB",
            ]
        else:
            cells += ["-"] * 4
        cells += [
            _edit_cell(r.get("edit_busy"), can_edit),
            _edit_cell(r.get("edit_idle"), can_edit),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", default="beat,dcb,redbeat,mainspring")
    parser.add_argument("--phases", default="precision,burst,idle")
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--duration", type=int, default=30, help="precision window, s")
    parser.add_argument("--burst-jobs", type=int, default=10_000)
    parser.add_argument("--burst-window", type=float, default=60.0, help="s after the due minute")
    parser.add_argument("--lead", type=float, default=20.0, help="min s from setup to due minute")
    parser.add_argument("--edit-trials", type=int, default=5, help="edits while busy")
    parser.add_argument("--idle-trials", type=int, default=3, help="edits while idle")
    parser.add_argument("--edit-timeout", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=3.0, help="s from first fire to window")
    parser.add_argument("--start-timeout", type=float, default=120.0, help="s to first fire")
    parser.add_argument("--keep-logs", action="store_true", help="keep the schedulers' logs")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379")
    parser.add_argument("--redis-dbs", default="12,13,14,15", help="beat,dcb,redbeat,mainspring")
    return parser.parse_args()


def _on_sigterm(*_: object) -> None:
    raise SystemExit(143)  # run the finally blocks: stop children, drop databases


def main() -> None:
    args = parse_args()
    signal.signal(signal.SIGTERM, _on_sigterm)
    tmp = Path(tempfile.mkdtemp(prefix="ms-beat-compare-"))
    procs = Procs()
    results: dict[str, dict[str, Any]] = {}
    load_before = os.getloadavg()
    ok = False
    try:
        for key in args.systems.split(","):
            print(f"-- {key}", flush=True)
            results[key] = run_system(key, args, tmp, procs)
            print(json.dumps(results[key]), flush=True)
        ok = True
    finally:
        procs.stop_all()
        if ok and not args.keep_logs:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"logs kept in {tmp}")
    report = {
        "bench": "beat_compare",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "cores": os.cpu_count(),
        "args": vars(args),
        "results": results,
    }
    RESULTS.mkdir(exist_ok=True)
    out = (
        RESULTS
        / f"beat_compare-{args.jobs}x{args.duration}s-{args.burst_jobs}-{int(time.time())}.json"
    )
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(results))
    print(f"load (1/5/15 min) before {report['load_before']}, after {report['load_after']}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
