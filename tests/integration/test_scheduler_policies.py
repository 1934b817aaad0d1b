"""Misfire, overlap, data window, bounds, delayed runs and cancellation, with a fake clock on
a real (SQLite) database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from mainspring.context import AppContext
from mainspring.core.states import RunState
from mainspring.db.models import Job, Run
from mainspring.errors import ConflictError, ValidationError
from mainspring.scheduler.claims import claim_due_jobs
from mainspring.scheduler.service import Scheduler
from mainspring.services import delayed
from mainspring.services import jobs as job_service
from tests.integration.test_scheduler_claims import FakeClock, RecordingPublisher

T = datetime(2030, 1, 1, tzinfo=UTC)


class Revoker:
    def __init__(self) -> None:
        self.revoked: list[str] = []

    def revoke(self, run_id: str) -> None:
        self.revoked.append(run_id)


def make_job(ctx: AppContext, name: str = "j", every_ms: int = 1000, **fields: Any) -> int:
    spec = job_service.JobSpec(
        name=name,
        task="mainspring.echo",
        trigger={"kind": "interval", "every_ms": every_ms, "anchor": T.isoformat()},
        timezone="UTC",
        **fields,
    )
    with ctx.session() as session:
        return job_service.create_job(session, spec).id


def runs_of(ctx: AppContext, job_id: int) -> list[Run]:
    with ctx.session() as session:
        return list(
            session.scalars(select(Run).where(Run.job_id == job_id).order_by(Run.scheduled_for))
        )


def scheduler_at(ctx: AppContext, at: datetime, **kw: Any) -> tuple[Scheduler, RecordingPublisher]:
    clock = FakeClock(at)
    publisher = RecordingPublisher(clock)
    kw.setdefault("lead", timedelta(milliseconds=300))  # policies, not claiming ahead
    return Scheduler(ctx, publisher, clock=clock, listen=False, **kw), publisher


@pytest.mark.parametrize(
    ("policy", "published_dues"),
    [
        ("skip", [T + timedelta(seconds=100)]),
        ("run_once", [T + timedelta(seconds=99), T + timedelta(seconds=100)]),
        ("run_all", [T + timedelta(seconds=i) for i in range(101)]),
    ],
)
def test_misfire_policy_runs_or_records_missed_fires(ctx, policy, published_dues):
    job_id = make_job(ctx, misfire_policy=policy, misfire_grace_s=0)
    scheduler, publisher = scheduler_at(ctx, T + timedelta(seconds=100))
    scheduler.tick()
    assert [r.due for r, _ in publisher.published] == published_dues
    runs = runs_of(ctx, job_id)
    skipped = [r for r in runs if r.state == RunState.SKIPPED.value]
    assert len(runs) == 101  # every fire is a run record, executed or skipped
    assert len(skipped) == 101 - len(published_dues)
    assert all(r.reason and r.reason.startswith("misfire") for r in skipped)


def test_fires_within_grace_run_late_rather_than_skip(ctx):
    make_job(ctx, misfire_policy="skip", misfire_grace_s=10)
    scheduler, publisher = scheduler_at(ctx, T + timedelta(seconds=5))
    scheduler.tick()
    assert [r.due for r, _ in publisher.published] == [T + timedelta(seconds=i) for i in range(6)]


def test_overlap_skip_records_the_fire_while_the_previous_run_is_active(ctx):
    job_id = make_job(ctx, overlap_policy="skip")
    scheduler, publisher = scheduler_at(ctx, T)
    scheduler.tick()
    scheduler.tick()  # moves the fake clock to the next fire only by sleeping
    scheduler._clock.sleep(1.0)  # type: ignore[attr-defined]
    scheduler.tick()
    runs = runs_of(ctx, job_id)
    assert [r.state for r in runs] == [RunState.SENT.value, RunState.SKIPPED.value]
    assert "still active" in (runs[1].reason or "")
    assert len(publisher.published) == 1


def test_overlap_replace_revokes_the_running_one(ctx):
    job_id = make_job(ctx, overlap_policy="replace")
    revoker = Revoker()
    scheduler, publisher = scheduler_at(ctx, T, revoker=revoker)
    scheduler.tick()
    scheduler._clock.sleep(1.0)  # type: ignore[attr-defined]
    scheduler.tick()
    first, second = runs_of(ctx, job_id)
    assert revoker.revoked == [first.id]
    assert first.state == RunState.REVOKED.value
    assert second.state == RunState.SENT.value
    assert len(publisher.published) == 2


def test_overlap_queue_one_holds_a_fire_until_the_running_one_ends(ctx):
    job_id = make_job(ctx, overlap_policy="queue_one")
    scheduler, publisher = scheduler_at(ctx, T)
    scheduler.tick()
    first = runs_of(ctx, job_id)[0]
    with ctx.session() as session:
        session.get(Run, first.id).state = RunState.STARTED.value  # type: ignore[union-attr]
    scheduler._clock.sleep(1.0)  # type: ignore[attr-defined]
    scheduler.tick()
    held = runs_of(ctx, job_id)[1]
    assert held.waits_for == first.id
    assert len(publisher.published) == 1
    scheduler._clock.sleep(1.0)  # type: ignore[attr-defined]
    scheduler.tick()  # a third fire while one is held: skipped
    assert runs_of(ctx, job_id)[2].state == RunState.SKIPPED.value
    with ctx.session() as session:
        session.get(Run, first.id).state = RunState.SUCCESS.value  # type: ignore[union-attr]
    scheduler._next_claim = None
    scheduler.tick()
    assert [r.run_id for r, _ in publisher.published] == [first.id, held.id]


def test_seed_004_weekly_job_receives_its_three_day_window_as_kwargs(ctx):
    spec = job_service.JobSpec(
        name="weekly-inspection",
        task="inspect.run",
        trigger={"kind": "cron", "expr": "0 8 * * 3"},
        timezone="Asia/Shanghai",
        kwargs={"site": "a"},
        data_window={"v": 1, "lookback_s": 259200, "as_kwargs": True},
    )
    due = datetime(2025, 10, 1, 0, tzinfo=UTC)  # Wednesday 08:00 in Shanghai
    with ctx.session() as session:
        job = job_service.create_job(session, spec)
        job.next_fire_at = due
    scheduler, publisher = scheduler_at(ctx, due - timedelta(milliseconds=100))
    scheduler.tick()
    ((run, at),) = publisher.published
    assert at == due
    assert run.kwargs == {
        "site": "a",
        "window_start": "2025-09-28T08:00:00+08:00",
        "window_end": "2025-10-01T08:00:00+08:00",
        "scheduled_for": "2025-10-01T08:00:00+08:00",
    }
    assert run.window_start == datetime(2025, 9, 28, 0, tzinfo=UTC)


def test_max_runs_and_end_bound_stop_the_job(ctx):
    job_id = make_job(ctx, max_runs=2, end_at=(T + timedelta(minutes=5)).isoformat())
    scheduler, publisher = scheduler_at(ctx, T + timedelta(seconds=1))
    scheduler.tick()
    assert len(publisher.published) == 2
    with ctx.session() as session:
        assert session.get(Job, job_id).next_fire_at is None  # type: ignore[union-attr]


def test_jitter_delays_publish_within_its_bound_and_keeps_scheduled_for(ctx):
    make_job(ctx, jitter_ms=200)
    scheduler, publisher = scheduler_at(ctx, T - timedelta(milliseconds=50))
    for _ in range(5):
        scheduler.tick()
    ((run, at),) = publisher.published
    assert run.due == T
    assert T <= at <= T + timedelta(milliseconds=200)


def test_delayed_run_is_published_when_due_and_can_be_cancelled(ctx):
    with ctx.session() as session:
        kept = delayed.submit_delayed(session, "tasks.add", T + timedelta(seconds=5), args=[1, 2])
        dropped = delayed.submit_delayed(session, "tasks.add", T + timedelta(seconds=5))
    with ctx.session() as session:
        delayed.cancel_run(session, dropped.id, reason="not needed")
    scheduler, publisher = scheduler_at(ctx, T)
    scheduler.tick()
    assert publisher.published == []
    scheduler._clock.sleep(4.9)  # type: ignore[attr-defined]
    scheduler.tick()
    assert [(r.run_id, r.args, at) for r, at in publisher.published] == [
        (kept.id, [1, 2], T + timedelta(seconds=5))
    ]
    with ctx.session() as session:
        assert session.get(Run, dropped.id).state == RunState.REVOKED.value  # type: ignore[union-attr]
        with pytest.raises(ConflictError):
            delayed.cancel_run(session, kept.id)


def test_edit_cancels_a_claimed_fire_and_the_next_follows_the_new_definition(ctx):
    job_id = make_job(ctx)
    with ctx.session() as session:
        claim = claim_due_jobs(session, T, T - timedelta(milliseconds=200), "other")
    assert len(claim.runs) == 1
    spec = job_service.JobSpec(
        name="j", task="mainspring.echo", timezone="UTC", kwargs={"new": True},
        trigger={"kind": "interval", "every_ms": 5000, "anchor": T.isoformat()},
    )  # fmt: skip
    with ctx.session() as session:
        job_service.update_job(session, job_service.get_job(session, job_id), spec)
    (cancelled,) = runs_of(ctx, job_id)
    assert cancelled.state == RunState.SKIPPED.value
    assert cancelled.reason == "job edited"
    with ctx.session() as session:
        assert session.get(Job, job_id).next_fire_at == T + timedelta(seconds=5)  # type: ignore[union-attr]


def test_deleted_jobs_claimed_run_is_dropped_by_the_scheduler_before_publishing(ctx):
    job_id = make_job(ctx, jitter_ms=3_000_000)
    scheduler, publisher = scheduler_at(ctx, T)
    scheduler.tick()  # claimed; publish far away because of the jitter
    assert len(scheduler._pending) == 1
    with ctx.session() as session:
        job_service.delete_job(session, job_service.get_job(session, job_id))
    scheduler.wake.set()
    scheduler.tick()
    assert len(scheduler._pending) == 0
    assert publisher.published == []
    with ctx.session() as session:
        run = session.scalars(select(Run)).one()
    assert (run.state, run.reason) == (RunState.REVOKED.value, "job deleted")


def test_run_now_publishes_promptly_without_moving_the_next_fire(ctx):
    job_id = make_job(ctx, every_ms=3_600_000, kwargs={"a": 1})
    with ctx.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        before = job.next_fire_at
        run = delayed.run_now(session, job, kwargs={"a": 2})
    scheduler, publisher = scheduler_at(ctx, datetime.now(UTC))
    scheduler.tick()
    assert [(r.run_id, r.kwargs) for r, _ in publisher.published] == [(run.id, {"a": 2})]
    with ctx.session() as session:
        assert session.get(Job, job_id).next_fire_at == before  # type: ignore[union-attr]
        assert session.get(Run, run.id).trigger == "manual"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"timezone": "Mars/Base"}, "timezone"),
        ({"misfire_policy": "sometimes"}, "misfire_policy"),
        ({"overlap_policy": "parallel"}, "overlap_policy"),
        ({"start_at": T.isoformat(), "end_at": (T - timedelta(1)).isoformat()}, "end_at"),
        ({"jitter_ms": -1}, "jitter_ms"),
        ({"max_runs": 0}, "max_runs"),
        ({"trigger": {"kind": "interval", "every_ms": 5}}, "trigger.every_ms"),
        ({"trigger": {"kind": "cron", "expr": "not cron"}}, "trigger.expr"),
    ],
)
def test_bad_job_field_is_named_and_nothing_is_stored(ctx, fields, field):
    values: dict[str, Any] = {
        "name": "bad", "task": "t.x", "timezone": "UTC",
        "trigger": {"kind": "interval", "every_ms": 1000},
    }  # fmt: skip
    values.update(fields)
    with pytest.raises(ValidationError) as info, ctx.session() as session:
        job_service.create_job(session, job_service.JobSpec(**values))
    assert info.value.field == field
    with ctx.session() as session:
        assert job_service.count_jobs(session) == 0
