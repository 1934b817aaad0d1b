"""The Python API for application code (seed 004): jobs by name, straight to the database."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from mainspring.client import Mainspring
from mainspring.context import AppContext
from mainspring.core.states import RunState
from mainspring.db.models import Run
from mainspring.errors import NotFoundError, ValidationError


@pytest.fixture
def client(ctx: AppContext) -> Mainspring:
    return Mainspring(ctx)


def test_upsert_creates_then_updates_the_job_by_name(client: Mainspring) -> None:
    created = client.upsert_job(
        "weekly-inspection", "inspect.run", cron="0 8 * * 3", kwargs={"site": "a"},
        data_window={"lookback_s": 259200, "as_kwargs": True},
    )  # fmt: skip
    assert created.timezone == "Asia/Shanghai"  # the configured default
    assert created.next_fire_at is not None
    assert created.next_fire_at.astimezone(created.next_fire_at.tzinfo).weekday() in (1, 2)
    updated = client.upsert_job("weekly-inspection", "inspect.run", cron="0 9 * * 3")
    assert updated.id == created.id
    assert updated.trigger["expr"] == "0 9 * * 3"
    assert [j.name for j in client.list_jobs()] == ["weekly-inspection"]


def test_unknown_or_invalid_field_is_a_clear_error_and_stores_nothing(client: Mainspring) -> None:
    with pytest.raises(ValidationError) as info:
        client.upsert_job("x", "t.x", cron="* * * * *", colour="blue")
    assert info.value.field == "colour"
    with pytest.raises(ValidationError) as info:
        client.upsert_job("x", "t.x", cron="* * * * *", timezone="Nowhere/City")
    assert info.value.field == "timezone"
    with pytest.raises(ValidationError) as info:
        client.upsert_job("x", "t.x", cron="* * * * *", every_ms=100)
    assert info.value.field == "trigger"
    assert client.list_jobs() == []


def test_pause_resume_delete_and_run_now(client: Mainspring, ctx: AppContext) -> None:
    client.upsert_job("nightly", "t.backup", cron="0 2 * * *")
    assert client.pause("nightly").next_fire_at is None
    resumed = client.resume("nightly")
    assert resumed.enabled
    assert resumed.next_fire_at is not None
    run_id = client.run_now("nightly", args=[1])
    with ctx.session() as session:
        run = session.get(Run, run_id)
        assert run is not None
        assert (run.state, run.trigger, run.args) == (RunState.SCHEDULED.value, "manual", [1])
    client.delete_job("nightly")
    assert client.list_jobs() == []
    with ctx.session() as session:  # history is kept
        assert session.scalars(select(Run.id)).all() == [run_id]
    with pytest.raises(NotFoundError):
        client.delete_job("nightly")
