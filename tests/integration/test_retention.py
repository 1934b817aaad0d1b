"""Retention on real databases: age and per-job count rules, per-job overrides, logs too."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mainspring.context import AppContext
from mainspring.core.states import RunState, TriggerSource
from mainspring.db.models import Job, Run, RunLog
from mainspring.services.clock import utcnow
from mainspring.services.retention import RetentionPolicy, purge
from mainspring.settings import Settings


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path, data_dir: Path) -> Iterator[AppContext]:
    if request.param == "postgres":
        request.applymarker(pytest.mark.postgres)
        url = str(request.getfixturevalue("postgres_url"))
    else:
        url = f"sqlite:///{tmp_path / 'retention.db'}"
    context = AppContext.open(Settings(data_dir=data_dir, database_url=url, secret_key="k"))
    yield context
    context.close()


def _job(session: object, name: str, days: int | None = None, keep: int | None = None) -> int:
    now = utcnow()
    job = Job(
        name=name,
        task="t",
        trigger_kind="manual",
        trigger={"v": 1, "kind": "manual"},
        timezone="UTC",
        retention_days=days,
        retention_max_runs=keep,
        created_at=now,
        updated_at=now,
    )
    session.add(job)  # type: ignore[attr-defined]
    session.flush()  # type: ignore[attr-defined]
    return job.id


def _runs(ctx: AppContext, job_id: int | None, prefix: str, ages_days: list[float]) -> None:
    now = utcnow()
    with ctx.session() as session:
        for i, age in enumerate(ages_days):
            at: datetime = now - timedelta(days=age)
            run_id = f"{prefix}-{i}"
            session.add(
                Run(
                    id=run_id,
                    job_id=job_id,
                    task="t",
                    state=RunState.SUCCESS.value,
                    trigger=TriggerSource.SCHEDULE.value,
                    created_at=at,
                    updated_at=at,
                    options={},
                )
            )
            session.flush()
            session.add(RunLog(run_id=run_id, seq=0, at=at, stream="stdout", text="x"))


def _ids(ctx: AppContext) -> set[str]:
    with ctx.session() as session:
        return set(session.scalars(select(Run.id)))


def test_old_runs_and_their_logs_are_deleted_in_batches(store: AppContext) -> None:
    with store.session() as session:
        plain = _job(session, "plain")
        short = _job(session, "short", days=2)
    _runs(store, plain, "plain", [0.5, 10, 31, 40, 45])
    _runs(store, short, "short", [1, 3, 5])
    _runs(store, None, "external", [29, 33])
    deleted = purge(store, RetentionPolicy(days=30, batch_size=2), utcnow())
    assert deleted == 3 + 2 + 1
    assert _ids(store) == {"plain-0", "plain-1", "short-0", "external-0"}
    with store.session() as session:
        logs = set(session.scalars(select(RunLog.run_id)))
    assert logs == _ids(store)


def test_runs_beyond_the_per_job_maximum_are_deleted_newest_kept(store: AppContext) -> None:
    with store.session() as session:
        capped = _job(session, "capped", keep=2)
        default = _job(session, "default")
    _runs(store, capped, "capped", [1, 2, 3, 4])
    _runs(store, default, "default", [1, 2, 3, 4, 5])
    purge(store, RetentionPolicy(days=None, max_runs_per_job=3, batch_size=1), utcnow())
    assert _ids(store) == {"capped-0", "capped-1", "default-0", "default-1", "default-2"}


def test_unfinished_runs_are_not_deleted_by_the_count_rule(store: AppContext) -> None:
    with store.session() as session:
        job = _job(session, "busy", keep=1)
    _runs(store, job, "busy", [1, 2, 3])
    with store.session() as session:
        run = session.get(Run, "busy-2")
        assert run is not None
        run.state = RunState.STARTED.value
    purge(store, RetentionPolicy(days=None), utcnow())
    assert _ids(store) == {"busy-0", "busy-2"}
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(RunLog)) == 2
