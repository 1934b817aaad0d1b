"""Alert evaluation's queries and its lease on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from mainspring.alerts.config import ChannelKind, RuleKind
from mainspring.alerts.evaluate import Alerting
from mainspring.alerts.store import RuleSpec, create_channel, create_rule
from mainspring.context import AppContext
from mainspring.core.states import RunState
from mainspring.db.models import Alert, Lease, Run
from mainspring.observability.probe import RECORDER_PREFIX, SCHEDULER_PREFIX, alive
from mainspring.services.audit import Actor
from mainspring.settings import Settings
from tests.integration.alert_receivers import webhook_server


@pytest.fixture
def any_ctx(database_url: str, data_dir: Path) -> Iterator[AppContext]:
    ctx = AppContext.open(Settings(data_dir=data_dir, database_url=database_url))
    yield ctx
    ctx.close()


def _failed_run(ctx: AppContext, run_id: str, at: datetime) -> None:
    with ctx.session() as s:
        s.add(
            Run(
                id=run_id, task="t", options={}, state=RunState.FAILURE.value, attempt=0,
                trigger="api", created_at=at, updated_at=at, log_bytes=0, log_truncated=False,
                exception_message="boom",
            )
        )  # fmt: skip


def test_one_evaluator_one_alert_per_cooldown_on_every_database(any_ctx: AppContext) -> None:
    now = datetime(2026, 5, 1, tzinfo=UTC)
    with webhook_server() as hook:
        with any_ctx.session() as s:
            channel = create_channel(s, Actor("t"), "h", ChannelKind.WEBHOOK, {"url": hook.url})
            create_rule(s, Actor("t"), RuleSpec("f", RuleKind.RUN_FAILED, [channel.id]))
            s.add(Lease(name=f"{SCHEDULER_PREFIX}x", holder="x", fencing_token=0, expires_at=now))
        clock = [now]
        first = Alerting(any_ctx, clock=lambda: clock[0], holder="a:1")
        second = Alerting(any_ctx, clock=lambda: clock[0], holder="b:2")
        for i in range(5):
            clock[0] += timedelta(seconds=2)
            _failed_run(any_ctx, f"r{i}", clock[0])
            first.tick()
            second.tick()
        assert len(hook.received) == 1
    with any_ctx.session() as s:
        [alert] = s.scalars(select(Alert)).all()
        assert alert.suppressed == 4
        assert alive(s, SCHEDULER_PREFIX, clock[0]) == []
        assert alive(s, RECORDER_PREFIX, clock[0]) == ["a:1", "b:2"]
