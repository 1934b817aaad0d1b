"""Run actions against real ``mainspring worker`` processes on Redis: a revoked run never
executes (even with no worker up at revoke time), terminate stops a running task, a re-run
executes again, and a run's output is followed live through the recorder."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from fastapi.testclient import TestClient

from mainspring.api.app import create_app
from mainspring.context import AppContext
from mainspring.core.states import Role, RunState
from mainspring.db.models import Run
from mainspring.services.auth import create_api_token
from mainspring.services.users import create_user
from mainspring.settings import Settings
from tests.conftest import RecordingSystem, WorkerPool
from tests.helpers import poll

pytestmark = [pytest.mark.celery, pytest.mark.redis]

Auth = dict[Role | None, dict[str, str]]
TASKS = "tests.worker_tasks.reliability"
QUEUE = f"test-{uuid.uuid4().hex[:8]}"  # so no other test's worker on the Redis takes a run


@pytest.fixture
def settings(data_dir: Any, redis_url: str) -> Settings:
    return Settings(data_dir=data_dir, secret_key="k", broker_url=redis_url, default_queue=QUEUE)


@pytest.fixture
def client(celery_client: TestClient) -> TestClient:
    return celery_client


class Workers:
    """Workers loading the reliability tasks, which count their executions in Redis."""

    def __init__(self, pool: WorkerPool, data_dir: Path, redis_url: str) -> None:
        self.pool = pool
        self.redis = redis.Redis.from_url(redis_url)
        self.env = {
            "MAINSPRING_DATA_DIR": str(data_dir),
            "MAINSPRING_BROKER_URL": redis_url,
            "MAINSPRING_TEST_COUNTER_URL": redis_url,
        }

    def start(self, pool: str = "threads") -> str:
        return self.pool.start(self.env, "-P", pool, "-c", "1", "-Q", QUEUE, "-I", TASKS)

    def executions(self, name: str, run_id: str) -> int:
        return int(self.redis.llen(f"test:executions:{name}:{run_id}"))


@pytest.fixture
def workers(worker_pool: WorkerPool, data_dir: Path, redis_url: str) -> Workers:
    return Workers(worker_pool, data_dir, redis_url)


def submit(client: TestClient, auth: Auth, task: str, args: list[Any]) -> str:
    body = {"task": task, "args": args}
    response = client.post("/api/v1/tasks", json=body, headers=auth[Role.OPERATOR])
    assert response.status_code == 202, response.text
    run_id: str = response.json()["id"]
    return run_id


def test_a_run_revoked_while_no_worker_was_up_never_executes(
    client: TestClient, auth: Auth, celery: Celery, workers: Workers
) -> None:
    revoked = submit(client, auth, f"{TASKS}.count", ["revoked"])
    answer = client.post(f"/api/v1/runs/{revoked}/revoke", headers=auth[Role.OPERATOR])
    assert answer.status_code == 202
    after = submit(client, auth, f"{TASKS}.count", ["after"])
    workers.start()
    assert celery.AsyncResult(after).get(timeout=60) == 1
    poll(
        lambda: celery.AsyncResult(revoked).state == "REVOKED",
        timeout=30,
        what="the revoked run to be discarded",
    )
    assert workers.executions("after", after) == 1
    assert workers.executions("revoked", revoked) == 0


def test_terminate_stops_a_running_task(
    client: TestClient, auth: Auth, celery: Celery, workers: Workers
) -> None:
    host = workers.start(pool="prefork")
    run_id = submit(client, auth, f"{TASKS}.slow", ["slow", 120])
    poll(lambda: workers.executions("slow", run_id), timeout=60, what="the task to start")
    body = {"signal": "SIGKILL"}
    answer = client.post(f"/api/v1/runs/{run_id}/terminate", json=body, headers=auth[Role.OPERATOR])
    assert answer.status_code == 202
    poll(
        lambda: celery.AsyncResult(run_id).state == "REVOKED",
        timeout=60,
        what="the running task to be terminated",
    )
    assert celery.control.ping([host], timeout=10) != []  # the worker itself lives on


def test_a_rerun_with_edited_arguments_executes_again(
    client: TestClient, auth: Auth, ctx: AppContext, celery: Celery, workers: Workers
) -> None:
    workers.start()
    first = submit(client, auth, f"{TASKS}.count", ["first"])
    assert celery.AsyncResult(first).get(timeout=60) == 1
    body = {"args": ["second"]}
    answer = client.post(f"/api/v1/runs/{first}/rerun", json=body, headers=auth[Role.OPERATOR])
    assert answer.status_code == 202
    again = answer.json()["id"]
    assert celery.AsyncResult(again).get(timeout=60) == 1
    assert (workers.executions("first", first), workers.executions("second", again)) == (1, 1)
    with ctx.session() as s:
        run = s.get(Run, again)
        assert run is not None
        assert (run.reason, run.args) == (f"rerun of {first}", ["second"])


def test_a_real_runs_output_is_followed_live_until_it_ends(
    recording: Callable[[str], RecordingSystem], redis_url: str, fast_argon2: None
) -> None:
    system = recording(redis_url)
    system.start_recorder()
    system.start_worker(pool="threads", concurrency=1)
    with system.ctx.session() as s:
        secret, _ = create_api_token(s, create_user(s, "op", "pw-123456789", Role.OPERATOR), "t")
    web = create_app(system.ctx)
    web.state.celery = system.app
    headers = {"Authorization": f"Bearer {secret}"}
    with TestClient(web) as client:
        body = {"task": "tests.slow_print", "args": ["first", 3.0, "second"]}
        run_id = client.post("/api/v1/tasks", json=body, headers=headers).json()["id"]
        seen: list[tuple[str, dict[str, Any], str]] = []
        url = f"/api/v1/runs/{run_id}/logs/follow"
        with client.stream("GET", url, headers=headers) as response:
            name = ""
            for line in response.iter_lines():
                if line.startswith("event: "):
                    name = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    seen.append(
                        (name, json.loads(line.removeprefix("data: ")), _state(system, run_id))
                    )
    logs = [(data["text"], state) for name, data, state in seen if name == "log"]
    assert "".join(text for text, _ in logs) == "first\nsecond\n"
    assert logs[0] == ("first\n", RunState.STARTED.value)  # seen while the task still ran
    assert seen[-1][0] == "end"
    assert seen[-1][1]["state"] == "SUCCESS"


def _state(system: RecordingSystem, run_id: str) -> str:
    with system.ctx.session() as s:
        run = s.get(Run, run_id)
        return run.state if run is not None else ""
