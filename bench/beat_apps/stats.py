"""Figures from timestamped arrivals: precision, burst and edit latency.

Lateness is always arrival at the broker minus the instant the fire was due, but the due
instant is known in three different ways (see ``docs/benchmarks.md``):

- ``header``: Mainspring puts it in the message (``mainspring_scheduled_for``);
- ``whole-second``: celery beat and RedBeat run ``schedule(1 s, relative=True)``: each fire is
  due at the first whole second after the previous one was sent, the rule those schedulers
  apply themselves; a fire late by more than a second makes them skip the seconds in between,
  which shows as missed fires;
- ``own-promise``: django-celery-beat's interval cannot be anchored: each fire is due one
  period after the previous one was sent, so lateness = gap to the job's previous message -
  period (the delay per fire; it accumulates as drift, which shows as missed fires).

The previous arrival stands for the previous send (the broker hop is about a millisecond).
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections import Counter, defaultdict
from typing import Any

from scheduler_precision import percentile

from beat_apps.collect import Arrival


def lateness_figures(lateness_s: list[float]) -> dict[str, float | None]:
    ms = [x * 1000 for x in lateness_s]
    if not ms:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    return {
        "p50_ms": round(statistics.median(ms), 1),
        "p99_ms": round(percentile(ms, 99), 1),
        "max_ms": round(max(ms), 1),
    }


def precision(
    arrivals: list[Arrival], method: str, jobs: int, start: float, duration: int
) -> dict[str, Any]:
    """Fires due in ``[start, start + duration + 1)``: ``duration + 1`` per job, every 1 s."""
    expected = jobs * (duration + 1)
    if method == "header":
        got = [a for a in arrivals if a.due is not None and start <= a.due <= start + duration]
        runs = {a.key: a.due for a in got}
        per_due = Counter(runs.values())
        missed = sum(max(0, jobs - per_due[start + k]) for k in range(duration + 1))
        extra = sum(max(0, n - jobs) for n in per_due.values())
        late = [a.at - a.due for a in got if a.due is not None]
        dup = len(got) - len(runs) + extra
        received = len(got)
    else:
        received, dup, late = _after_previous(arrivals, start, duration + 1, method)
        missed = max(0, expected - received + dup)
    return {
        "method": method,
        "expected": expected,
        "received": received,
        "missed": missed,
        "duplicates": dup,
        **lateness_figures(late),
    }


def _due_after(prev: float, at: float, method: str) -> float:
    """When a celery-based scheduler had the next fire due, given its previous send (the
    previous arrival stands for it: the broker hop is ~1 ms). ``whole-second``: the whole
    second after it (``relative=True``); if the hop straddled a second, one second earlier."""
    if method == "own-promise":
        return prev + 1.0
    due = math.floor(prev) + 1.0
    return due - 1.0 if due > at else due


def _after_previous(
    arrivals: list[Arrival], start: float, span: int, method: str
) -> tuple[int, int, list[float]]:
    """(fires received, duplicates, lateness) for fires due in ``[start, start + span)``."""
    by_job: dict[str, list[float]] = defaultdict(list)
    for a in arrivals:
        by_job[a.key].append(a.at)
    late: list[float] = []
    received = dup = 0
    for times in by_job.values():
        times.sort()
        last_due = -math.inf
        for prev, at in itertools.pairwise(times):
            due = _due_after(prev, at, method)
            # A second message for the same fire: the same whole second, or (own promise)
            # less than half a period after the previous one.
            again = due <= last_due if method == "whole-second" else at - prev < 0.5
            last_due = due
            if not start <= due < start + span:
                continue
            received += 1
            if again:
                dup += 1
            else:
                late.append(at - due)
    return received, dup, late


def burst(arrivals: list[Arrival], due: float, jobs: int) -> dict[str, Any]:
    """How many distinct fires of the burst arrived within 1 s and 60 s of the due instant."""
    first_at: dict[str, float] = {}
    for a in sorted(arrivals, key=lambda a: a.at):
        first_at.setdefault(a.key, a.at)
    late = sorted(at - due for at in first_at.values())
    return {
        "jobs": jobs,
        "received": len(first_at),
        "duplicates": len(arrivals) - len(first_at),
        "within_1s": sum(1 for x in late if x <= 1.0),
        "within_60s": sum(1 for x in late if x <= 60.0),
        "first_ms": round(late[0] * 1000, 1) if late else None,
        "last_ms": round(late[-1] * 1000, 1) if late else None,
        "complete": len(first_at) == jobs,
    }


def edits(latencies: list[float | None], timeout: float) -> dict[str, Any]:
    """Edit-to-fire latencies in seconds; None is a trial that saw no fire within ``timeout``."""
    seen = [x * 1000 for x in latencies if x is not None]
    return {
        "trials": len(latencies),
        "timed_out": len(latencies) - len(seen),
        "timeout_s": timeout,
        "p50_ms": round(statistics.median(seen), 1) if seen else None,
        "max_ms": round(max(seen), 1) if seen else None,
        "all_ms": [round(x, 1) for x in seen],
    }
