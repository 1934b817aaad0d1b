"""The walking skeleton end to end with real parts: scheduler → broker → worker → recorder.

The scheduler and recorder run in threads of the test; the worker is a real
``mainspring worker`` process consuming from the local Redis or RabbitMQ.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from mainspring.context import AppContext
from mainspring.core.states import RunState
from mainspring.db.models import Run, Worker
from mainspring.recorder.service import Recorder, RecorderOptions
from mainspring.scheduler.publisher import CeleryPublisher
from mainspring.scheduler.service import Scheduler
from mainspring.services import jobs as job_service
from mainspring.services.runs import run_log_text
from mainspring.settings import Settings
from mainspring.worker.app import make_celery
from tests.helpers import mainspring_process, poll, stop_process_tree

pytestmark = pytest.mark.celery


@pytest.fixture(params=["embedded_redis", "redis", "rabbitmq"])
def broker_url(request: pytest.FixtureRequest) -> str:
    if request.param != "embedded_redis":
        request.applymarker(getattr(pytest.mark, request.param))
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture
def system(broker_url: str, data_dir: Path, tmp_path: Path) -> Iterator[AppContext]:
    """Scheduler and recorder threads plus one worker process; all stopped afterwards."""
    settings = Settings(data_dir=data_dir, broker_url=broker_url, secret_key="k")
    ctx = AppContext.open(settings)
    app = make_celery(settings)
    stop = threading.Event()
    node = f"test-{uuid.uuid4().hex[:8]}"
    recorder = Recorder(ctx, app, queue_node=node, options=RecorderOptions(event_queue_ttl=300))
    threads = [
        threading.Thread(target=recorder.run, args=(stop,), daemon=True),
        threading.Thread(
            target=Scheduler(ctx, CeleryPublisher(app), poll_interval=0.2).run,
            args=(stop,),
            daemon=True,
        ),
    ]
    for thread in threads:
        thread.start()
    env = {"MAINSPRING_DATA_DIR": str(data_dir), "MAINSPRING_BROKER_URL": broker_url}
    worker = mainspring_process(
        [
            "worker",
            "-P",
            "threads",
            "-c",
            "2",
            "--allow-shell",
            "-n",
            f"w-{uuid.uuid4().hex[:6]}@t",
        ],
        env,
        tmp_path / "worker.log",
    )
    try:
        yield ctx
    finally:
        survivors = stop_process_tree(worker)
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        with app.connection_for_write() as conn:
            conn.default_channel.queue_delete(f"celeryev.{node}")
        app.close()
        ctx.close()
        assert survivors == [], f"worker processes outlived SIGTERM: {survivors}"
        assert not any(t.is_alive() for t in threads)


def _succeeded_runs(ctx: AppContext, job_id: int) -> list[Run]:
    with ctx.session() as session:
        return list(
            session.scalars(
                select(Run).where(Run.job_id == job_id, Run.state == RunState.SUCCESS.value)
            )
        )


def test_scheduled_shell_job_runs_and_is_recorded_with_its_output(system: AppContext) -> None:
    ctx = system
    with ctx.session() as session:
        job = job_service.create_job(
            session,
            job_service.JobSpec(
                name="backup",
                task="mainspring.shell",
                trigger={"kind": "cron", "expr": "* * * * * *"},
                timezone="Asia/Shanghai",
                kwargs={"script": "echo backup-done; echo warn >&2"},
            ),
        )
    runs = poll(lambda: _succeeded_runs(ctx, job.id), timeout=60, what="a succeeded run")
    run = runs[0]
    assert run.worker
    assert run.worker.startswith("w-")
    assert run.scheduled_for is not None
    assert run.sent_at is not None
    assert run.started_at is not None
    assert run.finished_at is not None
    assert run.started_at <= run.finished_at
    assert run.lateness_ms is not None
    assert run.lateness_ms >= 0
    assert run.result == {"exit_code": 0, "output_tail": "backup-done\nwarn\n"}

    def log_of_run() -> str:
        with ctx.session() as session:
            return run_log_text(session, run.id)[0]

    assert poll(log_of_run, timeout=10, what="the run's log") == "backup-done\nwarn\n"
    with ctx.session() as session:
        workers = list(session.scalars(select(Worker)))
    assert [w.status for w in workers if w.hostname == run.worker] == ["online"]


def test_failing_shell_job_is_recorded_as_failure(system: AppContext) -> None:
    ctx = system
    with ctx.session() as session:
        job = job_service.create_job(
            session,
            job_service.JobSpec(
                name="broken",
                task="mainspring.shell",
                trigger={"kind": "interval", "every_ms": 1000},
                timezone="UTC",
                kwargs={"script": "echo about-to-fail; exit 3"},
            ),
        )

    def failed() -> list[Run]:
        with ctx.session() as session:
            return list(
                session.scalars(
                    select(Run).where(Run.job_id == job.id, Run.state == RunState.FAILURE.value)
                )
            )

    run = poll(failed, timeout=60, what="a failed run")[0]
    assert run.exception_type == "ShellCommandFailedError"
    assert "exit code 3" in (run.exception_message or "")
    assert run.traceback
