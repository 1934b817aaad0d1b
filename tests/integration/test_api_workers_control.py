"""Remote control through ``/api/v1/workers`` of a real ``mainspring worker`` process on
Redis: ping, what it holds, pool grow/shrink, autoscale refused, consumers, shutdown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from fastapi.testclient import TestClient
from sqlalchemy import select

from mainspring.context import AppContext
from mainspring.core.states import Role
from mainspring.db.models import AuditEntry, Worker
from mainspring.settings import Settings
from mainspring.worker.control import Control
from tests.conftest import WorkerPool
from tests.helpers import poll
from tests.integration.test_api_workers import register

pytestmark = [pytest.mark.celery, pytest.mark.redis]

Auth = dict[Role | None, dict[str, str]]
WAIT = "?timeout=10"  # a loaded test machine may answer slowly


@pytest.fixture
def settings(data_dir: Any, redis_url: str) -> Settings:
    return Settings(data_dir=data_dir, secret_key="k", broker_url=redis_url)


@pytest.fixture
def client(celery_client: TestClient) -> TestClient:
    return celery_client


def _processes(celery: Celery, host: str) -> int:
    stats = Control(celery, timeout=10).stats([host]).get(host) or {}
    return len(stats.get("pool", {}).get("processes", []))


def _consumes(celery: Celery, host: str) -> list[str]:
    return Control(celery, timeout=10).active_queues([host]).get(host, [])


def test_a_live_worker_is_pinged_resized_rerouted_and_shut_down(
    client: TestClient,
    auth: Auth,
    ctx: AppContext,
    celery: Celery,
    redis_url: str,
    data_dir: Path,
    worker_pool: WorkerPool,
) -> None:
    env = {"MAINSPRING_DATA_DIR": str(data_dir), "MAINSPRING_BROKER_URL": redis_url}
    host = worker_pool.start(env, "-P", "prefork", "-c", "1", "-Q", "default")
    register(ctx, host)
    base = f"/api/v1/workers/{host}"
    operator, admin = auth[Role.OPERATOR], auth[Role.ADMIN]

    pong = client.post(f"{base}/ping{WAIT}", headers=auth[Role.VIEWER])
    assert pong.status_code == 200
    assert pong.json()["reply"] == "pong"
    held = client.get(f"{base}/runs{WAIT}", headers=auth[Role.VIEWER]).json()
    assert (held["active"], held["reserved"]) == ([], [])

    grown = client.post(f"{base}/pool/grow{WAIT}", json={"n": 1}, headers=operator)
    assert grown.status_code == 200, grown.text
    assert "grow" in grown.json()["reply"]
    poll(lambda: _processes(celery, host) == 2, timeout=30, what="a second pool process")
    shrunk = client.post(f"{base}/pool/shrink{WAIT}", json={"n": 1}, headers=operator)
    assert shrunk.status_code == 200, shrunk.text
    poll(lambda: _processes(celery, host) == 1, timeout=30, what="one pool process again")

    refused = client.post(
        f"{base}/pool/autoscale{WAIT}", json={"max": 3, "min": 1}, headers=operator
    )
    assert refused.status_code == 409
    assert refused.json()["detail"].startswith(f"worker {host} refused:")

    added = client.post(f"{base}/consumers{WAIT}", json={"queue": "extra"}, headers=operator)
    assert added.status_code == 200, added.text
    poll(lambda: "extra" in _consumes(celery, host), timeout=30, what="a consumer of extra")
    with ctx.session() as s:
        assert "extra" in s.get(Worker, host).queues  # type: ignore[union-attr]
    removed = client.delete(f"{base}/consumers/extra{WAIT}", headers=operator)
    assert removed.status_code == 200, removed.text
    poll(lambda: "extra" not in _consumes(celery, host), timeout=30, what="extra to be dropped")

    assert client.post(f"{base}/shutdown{WAIT}", headers=operator).status_code == 403
    stopped = client.post(f"{base}/shutdown{WAIT}", headers=admin)
    assert stopped.status_code == 202
    process = worker_pool.procs[host]
    poll(lambda: process.poll() is not None, timeout=60, what="the worker to exit")

    with ctx.session() as s:
        entries = s.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
    assert [(e.action, e.object_id, e.actor) for e in entries] == [
        ("pool_grow", host, "operator"),
        ("pool_shrink", host, "operator"),
        ("add_consumer", host, "operator"),
        ("cancel_consumer", host, "operator"),
        ("shutdown", host, "admin"),
    ]
