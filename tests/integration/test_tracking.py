"""Worker-side capture with real workers: prints and log records reach ``run_logs`` per run,
in order, complete, followed live, and capped with one marker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from mainspring.core.states import RunState
from mainspring.db.models import Run, RunLog
from mainspring.services.runs import run_log_text
from mainspring.worker.runlog import DEFAULT_CAP_BYTES
from tests.conftest import RecordingSystem
from tests.helpers import poll

pytestmark = [pytest.mark.serial, pytest.mark.celery, pytest.mark.redis]


@pytest.fixture(params=["prefork", "threads"])
def system(
    request: pytest.FixtureRequest, recording: Callable[[str], RecordingSystem], redis_url: str
) -> RecordingSystem:
    system = recording(redis_url)
    system.start_recorder()
    system.start_worker(pool=request.param, concurrency=2)
    return system


def _send(system: RecordingSystem, name: str, *args: Any) -> str:
    return str(system.app.send_task(name, args=list(args)).id)


def _run(system: RecordingSystem, run_id: str) -> Run | None:
    with system.ctx.session() as session:
        return session.get(Run, run_id)


def _finished(system: RecordingSystem, run_id: str) -> Run | None:
    run = _run(system, run_id)
    return run if run is not None and RunState(run.state).is_final else None


def _log(system: RecordingSystem, run_id: str) -> str:
    with system.ctx.session() as session:
        return run_log_text(session, run_id)[0]


def test_ten_thousand_printed_lines_are_captured_in_order_and_complete(
    system: RecordingSystem,
) -> None:
    run_id = _send(system, "tests.print_lines", 10_000)
    expected = "".join(f"line {i:06d}\n" for i in range(10_000))
    text = poll(
        lambda: (t := _log(system, run_id)) == expected and t,
        timeout=60,
        what="the complete log of 10,000 lines",
    )
    assert text.splitlines()[:2] == ["line 000000", "line 000001"]
    run = poll(lambda: _finished(system, run_id), timeout=30, what="the run to finish")
    assert run.state == RunState.SUCCESS.value
    assert run.result == 10_000
    assert run.log_truncated is False
    assert run.log_bytes == len(expected)


def test_output_over_the_cap_is_truncated_with_one_marker(system: RecordingSystem) -> None:
    lines = DEFAULT_CAP_BYTES // 100 + 500  # ~1.05 MiB of 100-byte lines
    run_id = _send(system, "tests.print_lines", lines, 99)

    def truncated() -> Run | None:
        run = _run(system, run_id)
        return run if run is not None and run.log_truncated else None

    run = poll(truncated, timeout=60, what="the run's log to be marked truncated")
    text = poll(lambda: "log truncated" in (t := _log(system, run_id)) and t, timeout=30)
    assert text.count("log truncated") == 1
    assert text.rstrip().endswith("]")
    assert text.startswith("line 000000")
    assert DEFAULT_CAP_BYTES - 100 <= len(text.encode()) <= DEFAULT_CAP_BYTES + 200
    assert run.log_bytes <= DEFAULT_CAP_BYTES + 200


def test_log_records_and_prints_are_captured_with_timestamps(system: RecordingSystem) -> None:
    run_id = _send(system, "tests.log_and_print", "hello")
    text = poll(
        lambda: "warned hello" in (t := _log(system, run_id)) and t, timeout=30, what="the log"
    )
    lines = text.splitlines()
    assert [line.split(": ", 1)[-1] for line in lines if "tests.tasks" in line] == [
        "logged hello",
        "warned hello",
    ]
    assert "printed hello" in lines
    assert lines.index("printed hello") == 1  # order kept across print and logging
    assert lines[0][:4].isdigit()
    assert " INFO tests.tasks: " in lines[0]
    assert "Task tests.log_and_print" not in text  # Celery's own bookkeeping stays out
    with system.ctx.session() as session:
        streams = session.scalars(
            select(RunLog.stream).where(RunLog.run_id == run_id).order_by(RunLog.seq)
        ).all()
    assert list(streams) == ["log", "stdout", "log"]


def test_output_is_followed_live_while_the_task_runs(system: RecordingSystem) -> None:
    run_id = _send(system, "tests.slow_print", "first", 4.0, "second")
    poll(lambda: _run(system, run_id), timeout=30, what="the run")
    poll(lambda: _log(system, run_id) == "first\n", timeout=30, what="the first line, live")
    run = _run(system, run_id)
    assert run is not None
    assert run.state == RunState.STARTED.value
    assert poll(lambda: _finished(system, run_id), timeout=30).state == RunState.SUCCESS.value
    assert _log(system, run_id) == "first\nsecond\n"
