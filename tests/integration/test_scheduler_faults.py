"""A scheduler SIGKILLed again and again while jobs fire: every fire still runs exactly once.

Ten jobs fire every 500 ms; a real ``mainspring scheduler`` process is killed with SIGKILL five
times (restarted each time), with a real worker (threads pool) and a recorder running. The
worker-side task records each execution in Redis under its run id, so a fire lost (no run, or
a run never executed) or executed twice (two runs of one fire, or one run executed twice) fails.
"""

from __future__ import annotations

import signal
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from sqlalchemy import select

from mainspring.db.models import Run
from mainspring.services import jobs as job_service
from tests.conftest import RecordingSystem, WorkerPool
from tests.helpers import mainspring_process, poll, stop_process_tree

pytestmark = [pytest.mark.serial, pytest.mark.celery, pytest.mark.redis]

TASKS = "tests.worker_tasks.reliability"
JOBS, EVERY_MS, KILLS = 10, 500, 5


class Schedulers:
    """``mainspring scheduler`` processes, one alive at a time; none outlives the test."""

    def __init__(self, env: dict[str, str], tmp_path: Path) -> None:
        self.env, self.tmp_path = env, tmp_path
        self.current: subprocess.Popen[bytes] | None = None
        self.started = 0

    def start(self) -> None:
        log = self.tmp_path / f"scheduler-{self.started}.log"
        self.current = mainspring_process(["scheduler"], self.env, log)
        self.started += 1

    def kill(self) -> None:
        assert self.current is not None
        assert self.current.poll() is None, "the scheduler died on its own"
        self.current.send_signal(signal.SIGKILL)
        self.current.wait(timeout=10)

    def logs(self) -> str:
        return "".join(
            (self.tmp_path / f"scheduler-{i}.log").read_text(errors="replace")
            for i in range(self.started)
        )

    def stop(self) -> list[int]:
        return stop_process_tree(self.current) if self.current is not None else []


@pytest.fixture
def schedulers(redis_url: str, data_dir: Path, tmp_path: Path) -> Iterator[Schedulers]:
    env = {"MAINSPRING_DATA_DIR": str(data_dir), "MAINSPRING_BROKER_URL": redis_url}
    procs = Schedulers(env, tmp_path)
    yield procs
    assert procs.stop() == [], "scheduler processes outlived SIGTERM"


def test_sigkilled_scheduler_loses_no_fire_and_runs_none_twice(
    redis_url: str,
    recording: Callable[[str], RecordingSystem],
    worker_pool: WorkerPool,
    schedulers: Schedulers,
) -> None:
    system = recording(redis_url)
    system.start_recorder()
    env = {**system.env, "MAINSPRING_TEST_COUNTER_URL": redis_url}
    worker = worker_pool.start(env, "-P", "threads", "-c", "4", "-Q", "faults", "-I", TASKS)
    anchor = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
    with system.ctx.session() as session:
        for i in range(JOBS):
            spec = job_service.JobSpec(
                name=f"fault-{i}",
                task=f"{TASKS}.count",
                args=["fault"],
                queue="faults",
                timezone="UTC",
                trigger={"kind": "interval", "every_ms": EVERY_MS, "anchor": anchor.isoformat()},
            )
            job_service.create_job(session, spec)
    schedulers.start()
    for kill in range(KILLS):
        # Kill at a different point of the 500 ms cycle each time (claim, wait, publish).
        at = anchor + timedelta(seconds=2 + 3.5 * kill, milliseconds=97 * kill)
        poll(lambda at=at: datetime.now(UTC) >= at, timeout=30, interval=0.01, what="kill time")
        schedulers.kill()
        schedulers.start()
    end = datetime.now(UTC) + timedelta(seconds=2)
    poll(lambda: datetime.now(UTC) >= end, timeout=10, interval=0.05, what="the last fires")

    expected = {
        (job, anchor + timedelta(milliseconds=EVERY_MS * n))
        for job in range(JOBS)
        for n in range(int((end - anchor).total_seconds() * 1000) // EVERY_MS + 1)
    }
    counter = redis.Redis.from_url(redis_url)
    ids = {job_id: int(name.removeprefix("fault-")) for job_id, name in _job_names(system).items()}

    def fires_executed() -> dict[tuple[int, datetime], list[int]] | None:
        with system.ctx.session() as session:
            rows = session.execute(
                select(Run.id, Run.job_id, Run.scheduled_for).where(
                    Run.scheduled_for >= anchor, Run.scheduled_for <= end
                )
            ).all()
        runs: dict[tuple[int, datetime], list[int]] = {}
        for run_id, job_id, due in rows:
            key = (ids[job_id], due)
            runs.setdefault(key, []).append(int(counter.llen(f"test:executions:fault:{run_id}")))
        done = set(runs) >= expected and all(sum(n) >= 1 for n in runs.values())
        return runs if done else None

    runs = poll(fires_executed, timeout=40, interval=0.5, what="every fire to execute")
    assert schedulers.started == KILLS + 1
    assert set(runs) >= expected  # no fire lost
    assert Counter(len(n) for n in runs.values()) == {1: len(runs)}  # one run per fire
    assert Counter(n[0] for n in runs.values()) == {1: len(runs)}  # each run executed once
    # A kill of a running scheduler leaves claimed, unpublished runs that another process
    # takes over at once (a process killed while still starting up claimed nothing).
    running_kills = schedulers.logs().count(" started\n") - 1
    assert schedulers.logs().count("took over") >= running_kills - 1
    assert worker_pool.procs[worker].poll() is None, worker_pool.log(worker)[-2000:]


def _job_names(system: RecordingSystem) -> dict[int, str]:
    from mainspring.db.models import Job

    with system.ctx.session() as session:
        return {row.id: row.name for row in session.execute(select(Job.id, Job.name))}
