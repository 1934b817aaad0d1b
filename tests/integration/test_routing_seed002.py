"""Seed 002's layout with real workers: A on ``celery,queue_add``, B on ``celery,queue_reduce``.

The tasks module is the seed's own ``tasks.py`` (copied into a directory of its own and
loaded with ``--include tasks``), so task names are ``tasks.add`` etc. as in the seed.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from mainspring.context import AppContext
from mainspring.services.tasks import TaskOptions, submit_task
from mainspring.settings import Settings
from mainspring.worker.app import make_celery
from tests.conftest import WorkerPool

pytestmark = [pytest.mark.celery]  # on Redis and on RabbitMQ (the broker_url fixture)

ROUTES = {"tasks.add": "queue_add", "tasks.reduce": "queue_reduce"}


def _project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    source = Path(__file__).parents[1] / "worker_tasks" / "seed002.py"
    shutil.copy(source, project / "tasks.py")
    return project


def test_seed002_tasks_run_only_on_workers_consuming_their_queue(
    broker_url: str, data_dir: Path, tmp_path: Path, worker_pool: WorkerPool
) -> None:
    env = {
        "MAINSPRING_DATA_DIR": str(data_dir),
        "MAINSPRING_BROKER_URL": broker_url,
        "MAINSPRING_DEFAULT_QUEUE": "celery",
        "MAINSPRING_TASK_ROUTES": '{"tasks.add": "queue_add", "tasks.reduce": "queue_reduce"}',
    }
    project = _project(tmp_path)
    common = ["-P", "threads", "-c", "2", "--include", "tasks"]
    a = worker_pool.start(
        env, "-Q", "celery,queue_add", *common, name="celery_worker198@t", cwd=project
    )
    b = worker_pool.start(
        env, "-Q", "celery,queue_reduce", *common, name="celery_worker234@t", cwd=project
    )
    settings = Settings(
        data_dir=data_dir, broker_url=broker_url, default_queue="celery", task_routes=ROUTES
    )
    ctx = AppContext.open(settings)
    app = make_celery(settings)
    try:
        sent: list[tuple[str, Any]] = []
        for i in range(6):
            for task, args in (
                ("tasks.add", [i, 1]),
                ("tasks.reduce", [i, 1]),
                ("tasks.other", [i, 2]),
            ):
                sent.append((task, submit_task(ctx, app, task, args)))
            sent.append(("tasks.sum", submit_task(ctx, app, "tasks.sum", [[i, 1, 2]])))
        ran_on: dict[str, set[str]] = {}
        for task, run in sent:
            _value, host = app.AsyncResult(run.id).get(timeout=30)
            ran_on.setdefault(task, set()).add(host)
            assert run.queue == {"tasks.add": "queue_add", "tasks.reduce": "queue_reduce"}.get(
                task, "celery"
            )
        assert ran_on["tasks.add"] == {a}
        assert ran_on["tasks.reduce"] == {b}
        assert ran_on["tasks.other"] <= {a, b}
        assert ran_on["tasks.sum"] <= {a, b}
        assert app.AsyncResult(sent[-1][1].id).get(timeout=5)[0] == 5 + 1 + 2
    finally:
        app.close()
        ctx.close()


def test_explicit_options_override_the_route_and_target_one_worker(
    broker_url: str, data_dir: Path, tmp_path: Path, worker_pool: WorkerPool
) -> None:
    env = {"MAINSPRING_DATA_DIR": str(data_dir), "MAINSPRING_BROKER_URL": broker_url}
    project = _project(tmp_path)
    common = ["-P", "threads", "-c", "1", "--include", "tasks", "-Q", "shared"]
    worker_pool.start(env, *common, name="one@t", cwd=project)
    two = worker_pool.start(env, *common, name="two@t", cwd=project)
    settings = Settings(data_dir=data_dir, broker_url=broker_url)
    ctx = AppContext.open(settings)
    app = make_celery(settings)
    try:
        runs = [
            submit_task(ctx, app, "tasks.other", [i, 3], options=TaskOptions(worker=two))
            for i in range(5)
        ]
        hosts = {app.AsyncResult(r.id).get(timeout=30)[1] for r in runs}
        assert hosts == {two}
        assert {r.queue for r in runs} == {"host.two@t"}
    finally:
        app.close()
        ctx.close()
