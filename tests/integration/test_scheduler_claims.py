"""Scheduler claims against real databases: each fire once, on time, whoever claims it."""

from __future__ import annotations

import threading
from collections import Counter
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

    def publish(self, run: DueRun) -> None:
        with self.lock:
            self.published.append((run, self.clock.now() if self.clock else None))


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
    scheduler.tick()  # nothing new is due yet: no second publish

    assert [(r.job_id, r.due, at) for r, at in publisher.published] == [(job_id, anchor, anchor)]
    with ctx.session() as session:
        run = session.scalars(select(Run)).one()
        job = session.get(Job, job_id)
    assert run.state == RunState.SENT.value
    assert run.scheduled_for == anchor
    assert run.lateness_ms == 0
    assert job is not None
    assert job.next_fire_at == anchor + timedelta(seconds=1)


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
    for c in contexts:
        c.close()
    assert len(ids) > 200  # 20 jobs x 10 fires/s for ~2.7 s
    assert max(ids.values()) == 1
    assert max(fires.values()) == 1
    assert stored == len(ids)
    assert unsent == 0
