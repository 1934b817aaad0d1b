"""A batch the database refuses is kept and written later, never dropped (real SQLite)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from mainspring.context import AppContext
from mainspring.core.states import RunState
from mainspring.db.models import Run
from mainspring.recorder.service import Recorder
from mainspring.services.runs import run_log_text


@dataclass
class FlakyContext(AppContext):
    down: bool = False

    @contextmanager
    def session(self) -> Iterator[Session]:
        if self.down:
            raise OperationalError("INSERT", {}, Exception("database is down"))
        with super().session() as session:
            yield session


@pytest.fixture
def flaky(ctx: AppContext) -> FlakyContext:
    return FlakyContext(settings=ctx.settings, engine=ctx.engine, sessions=ctx.sessions)


def test_failed_flush_keeps_the_batch_and_merges_it_with_later_events(
    flaky: FlakyContext, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder(flaky, app=None)
    recorder.handle({"type": "task-sent", "uuid": "r1", "name": "t.a", "timestamp": 10.0})
    recorder.handle({"type": "task-log", "uuid": "r1", "seq": 0, "text": "one\n"})
    flaky.down = True
    with caplog.at_level(logging.ERROR, logger="mainspring.recorder"):
        assert recorder.flush() is False
    assert "could not write 1 runs" in caplog.text
    recorder.handle({"type": "task-started", "uuid": "r1", "hostname": "w", "timestamp": 11.0})
    recorder.handle({"type": "task-log", "uuid": "r1", "seq": 1, "text": "two\n"})
    recorder.flush_if_due()  # backing off: nothing is attempted yet
    assert recorder.flush() is False
    flaky.down = False
    assert recorder.flush() is True
    with flaky.session() as session:
        run = session.get(Run, "r1")
        assert run is not None
        assert run.state == RunState.STARTED.value
        assert run.task == "t.a"
        assert run.sent_at is not None
        assert run.started_at is not None
        assert run.worker == "w"
        assert run_log_text(session, "r1") == ("one\ntwo\n", 1)


def test_backoff_grows_between_failed_attempts(flaky: FlakyContext) -> None:
    recorder = Recorder(flaky, app=None)
    recorder.handle({"type": "task-sent", "uuid": "r2", "name": "t.b", "timestamp": 1.0})
    flaky.down = True
    delays = []
    for _ in range(3):
        assert recorder.flush() is False
        delays.append(recorder._retry_at - time.monotonic())
    assert 0.3 < delays[0] <= 0.5
    assert 0.8 < delays[1] <= 1.0
    assert 1.8 < delays[2] <= 2.0
