"""Tasks submitted over HTTP run on real ``mainspring worker`` processes: on Redis (now, on
one worker, broadcast with an offline host skipped) and on RabbitMQ."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from fastapi.testclient import TestClient

from mainspring.api.app import create_app
from mainspring.context import AppContext
from mainspring.core.states import Role, WorkerStatus
from mainspring.settings import Settings
from mainspring.worker.app import make_celery
from mainspring.worker.routing import host_queue
from tests.conftest import REPO_ROOT, WorkerPool
from tests.integration.test_api_workers import register

pytestmark = [pytest.mark.celery]

Auth = dict[Role | None, dict[str, str]]
TRACKING = "tests.tasks_for_tracking"
# Queues of this module's own, so no other test's worker on the same Redis takes a run.
QUEUE, SCAN = f"test-{uuid.uuid4().hex[:8]}", f"scan-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def settings(data_dir: Any, redis_url: str) -> Settings:
    return Settings(data_dir=data_dir, secret_key="k", broker_url=redis_url, default_queue=QUEUE)


@pytest.fixture
def client(celery_client: TestClient) -> TestClient:
    return celery_client


def post(client: TestClient, auth: Auth, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/api/v1/tasks", json=body, headers=auth[Role.OPERATOR])
    assert response.status_code == 202, response.text
    answer: dict[str, Any] = response.json()
    return answer


@pytest.mark.redis
def test_tasks_submitted_over_http_run_on_the_queue_or_the_worker_named(
    client: TestClient,
    auth: Auth,
    celery: Celery,
    redis_url: str,
    data_dir: Path,
    worker_pool: WorkerPool,
) -> None:
    env = {"MAINSPRING_DATA_DIR": str(data_dir), "MAINSPRING_BROKER_URL": redis_url}
    hosts = [
        worker_pool.start(
            env, "-P", "threads", "-c", "1", "-Q", QUEUE, "-I", TRACKING, cwd=REPO_ROOT
        )
        for _ in range(2)
    ]
    anywhere = post(client, auth, {"task": "tasks.add", "args": [2, 3]})
    assert celery.AsyncResult(anywhere["id"]).get(timeout=60) == 5
    pinned = post(
        client, auth, {"task": "tasks.add", "args": [1, 1], "options": {"worker": hosts[1]}}
    )
    assert celery.AsyncResult(pinned["id"]).get(timeout=60) == 2
    assert celery.backend.get_task_meta(pinned["id"])["worker"] == hosts[1]


@pytest.mark.redis
def test_a_broadcast_runs_on_every_live_worker_and_lists_the_offline_one(
    client: TestClient,
    auth: Auth,
    ctx: AppContext,
    celery: Celery,
    redis_url: str,
    data_dir: Path,
    worker_pool: WorkerPool,
) -> None:
    env = {"MAINSPRING_DATA_DIR": str(data_dir), "MAINSPRING_BROKER_URL": redis_url}
    live = worker_pool.start(env, "-P", "threads", "-c", "1", "-Q", SCAN)
    register(ctx, live, queues=[SCAN, host_queue(live)])
    register(ctx, "gone@seg", WorkerStatus.OFFLINE, queues=[SCAN, host_queue("gone@seg")])
    body = {
        "task": "mainspring.echo",
        "kwargs": {"message": "scan"},
        "options": {"queue": SCAN, "broadcast": True},
    }
    answer = post(client, auth, body)
    children = {c["worker"]: c for c in answer["children"]}
    assert set(children) == {live, "gone@seg"}
    sent = children[live]
    assert (sent["state"], sent["queue"]) == ("SENT", host_queue(live))
    skipped = children["gone@seg"]
    assert skipped["state"] == "SKIPPED"
    assert "offline" in skipped["reason"]
    assert celery.AsyncResult(sent["id"]).get(timeout=60) == "scan"
    listing = client.get(
        "/api/v1/runs", params={"parent_id": answer["id"]}, headers=auth[Role.VIEWER]
    ).json()
    assert {r["id"] for r in listing["items"]} == {sent["id"], skipped["id"]}


@pytest.mark.rabbitmq
@pytest.mark.redis  # the module's ``settings`` (the database side) name Redis
def test_a_task_submitted_over_http_runs_on_rabbitmq(
    ctx: AppContext,
    tokens: dict[Role, str],
    auth: Auth,
    rabbitmq_url: str,
    data_dir: Path,
    worker_pool: WorkerPool,
) -> None:
    rabbit = Settings(data_dir=data_dir, broker_url=rabbitmq_url)
    app = make_celery(rabbit)
    queue = f"ms-test-{uuid.uuid4().hex[:8]}"
    env = {"MAINSPRING_DATA_DIR": str(data_dir), "MAINSPRING_BROKER_URL": rabbitmq_url}
    try:
        worker_pool.start(
            env, "-P", "threads", "-c", "1", "-Q", queue, "-I", TRACKING, cwd=REPO_ROOT
        )
        web = create_app(ctx)
        web.state.celery = app
        with TestClient(web) as client:
            body = {"task": "tasks.add", "args": [20, 22], "options": {"queue": queue}}
            answer = post(client, auth, body)
        assert app.AsyncResult(answer["id"]).get(timeout=60) == 42
    finally:
        with app.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue)
        app.close()
