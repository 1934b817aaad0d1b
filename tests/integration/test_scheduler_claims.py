"""Scheduler claims against real databases: each fire once, on time, whoever claims it."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from mainspring.context import AppContext
from mainspring.core.states import RunState
from mainspring.db.models import Job, Run
from mainspring.scheduler.claims import DueRun
from mainspring.scheduler.service import Scheduler
from mainspring.services import jobs as job_service
from mainspring.settings import Settings


class FakeClock:
    """Wall time that moves only when the scheduler sleeps."""

    def __init__(self, start: datetime) -> None:
        self.current = start

    def now(self) -> datetime:
        return self.current

    def monotonic(self) -> float:
        return self.current.timestamp()

    def sleep(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


class RecordingPublisher:
    def __init__(self, clock: FakeClock | None = None) -> None:
        self.published: list[tuple[DueRun, datetime | None]] = []
        self.lock = threading.Lock()
        self.clock = clock

    def prepare(self, run: DueRun) -> DueRun:
        return run

    def send(self, prepared: Sequence[DueRun]) -> None:
        with self.lock:
            at = self.clock.now() if self.clock else None
            self.published += [(run, at) for run in prepared]


def _interval_job(ctx: AppContext, name: str, every_ms: int, anchor: datetime) -> int:
    with ctx.session() as session:
        job = job_service.create_job(
            session,
            job_service.JobSpec(
                name=name,
                task="mainspring.echo",
                trigger={"kind": "interval", "every_ms": every_ms, "anchor": anchor.isoformat()},
                timezone="UTC",
            ),
        )
        return job.id


def test_due_fire_is_published_at_its_instant_and_recorded_once(ctx: AppContext) -> None:
    anchor = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=10)
    job_id = _interval_job(ctx, "every-second", 1000, anchor)
    clock = FakeClock(anchor - timedelta(milliseconds=100))
    publisher = RecordingPublisher(clock)
    scheduler = Scheduler(ctx, publisher, clock=clock, poll_interval=1.0)

    scheduler.tick()
    scheduler.tick()  # the next fire is claimed a second ahead, but not published yet

    assert [(r.job_id, r.due, at) for r, at in publisher.published] == [(job_id, anchor, anchor)]
    with ctx.session() as session:
        runs = {r.scheduled_for: r for r in session.scalars(select(Run))}
        job = session.get(Job, job_id)
    assert runs[anchor].state == RunState.SENT.value
    assert runs[anchor].lateness_ms == 0
    assert set(runs) <= {anchor, anchor + timedelta(seconds=1)}
    assert all(r.state == RunState.SCHEDULED.value for at, r in runs.items() if at != anchor)
    assert job is not None
    assert job.next_fire_at == max(runs) + timedelta(seconds=1)


def test_paused_job_does_not_fire(ctx: AppContext) -> None:
    anchor = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=10)
    job_id = _interval_job(ctx, "paused", 1000, anchor)
    with ctx.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        job_service.set_enabled(session, job, False)
    clock = FakeClock(anchor)
    publisher = RecordingPublisher(clock)
    Scheduler(ctx, publisher, clock=clock).tick()
    assert publisher.published == []


@pytest.mark.postgres
def test_two_schedulers_never_publish_a_fire_twice(postgres_url: str, data_dir) -> None:
    settings = Settings(data_dir=data_dir, database_url=postgres_url, secret_key="k")
    contexts = [AppContext.open(settings), AppContext.open(settings)]
    anchor = datetime.now(UTC) + timedelta(milliseconds=300)
    for i in range(20):
        _interval_job(contexts[0], f"job-{i}", 100, anchor)
    publisher = RecordingPublisher()
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=Scheduler(c, publisher, poll_interval=0.05).run, args=(stop,), daemon=True
        )
        for c in contexts
    ]
    for thread in threads:
        thread.start()
    stop.wait(3.0)
    stop.set()
    for thread in threads:
        thread.join(timeout=10)
    ids = Counter(run.run_id for run, _ in publisher.published)
    fires = Counter((run.job_id, run.due) for run, _ in publisher.published)
    with contexts[0].session() as session:
        stored = session.scalar(select(func.count(Run.id)))
        unsent = session.scalar(
            select(func.count(Run.id)).where(Run.state == RunState.SCHEDULED.value)
        )
        released = session.scalar(
            select(func.count(Run.id)).where(
                Run.state == RunState.SCHEDULED.value, Run.claimed_by.is_(None)
            )
        )
    for c in contexts:
        c.close()
    assert len(ids) > 200  # 20 jobs x 10 fires/s for ~2.7 s
    assert max(ids.values()) == 1
    assert max(fires.values()) == 1
    # Fires claimed ahead but not due when both stopped were given back for any scheduler.
    assert stored == len(ids) + released
    assert unsent == released
