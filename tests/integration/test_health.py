"""``/readyz`` (no auth: database, migrations, broker) and ``/metrics`` (any role's token)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from mainspring.api.app import create_app
from mainspring.context import AppContext
from mainspring.core.states import Role, RunState
from mainspring.db.models import Run
from mainspring.services.clock import utcnow
from mainspring.settings import Settings
from mainspring.worker.app import make_celery

ROLES: list[Role | None] = [Role.ADMIN, Role.OPERATOR, Role.VIEWER, None]


@pytest.fixture
def ready_client(ctx: AppContext, redis_url: str, tokens: dict[Role, str]) -> Iterator[TestClient]:
    web = create_app(ctx)
    celery = make_celery(Settings(data_dir=ctx.settings.data_dir, broker_url=redis_url))
    web.state.celery = celery
    with TestClient(web) as client:
        yield client
    celery.close()


@pytest.mark.redis
def test_ready_when_database_current_and_broker_answers(ready_client: TestClient) -> None:
    response = ready_client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["failed"] == []
    assert body["checks"]["broker"] == {"ok": True, "detail": "redis"}


def test_not_ready_without_a_broker_names_it(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failed"] == ["broker"]
    assert response.json()["checks"]["database"]["ok"] is True


def test_unreachable_broker_is_a_503(ctx: AppContext, tokens: dict[Role, str]) -> None:
    web = create_app(ctx)
    web.state.celery = make_celery(
        Settings(data_dir=ctx.settings.data_dir, broker_url="redis://127.0.0.1:1/0")
    )
    with TestClient(web) as client:
        response = client.get("/readyz")
    web.state.celery.close()
    assert response.status_code == 503
    assert response.json()["failed"] == ["broker"]


@pytest.mark.redis
def test_schema_behind_the_migrations_is_not_ready(
    ctx: AppContext, ready_client: TestClient
) -> None:
    with ctx.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    response = ready_client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failed"] == ["migrations"]
    assert "mainspring db upgrade" in response.json()["checks"]["migrations"]["detail"]


@pytest.mark.parametrize("role", ROLES)
def test_metrics_need_a_token_of_any_role(
    ctx: AppContext, client: TestClient, auth: dict, role: Role | None
) -> None:
    now = utcnow()
    with ctx.session() as s:
        for i, (state, runtime) in enumerate(
            [(RunState.SUCCESS, 40.0), (RunState.FAILURE, 2500.0)]
        ):
            s.add(
                Run(
                    id=f"r{i}", task="tasks.add", queue="q1", state=state.value, trigger="api",
                    options={}, attempt=0, created_at=now, updated_at=now, runtime_ms=runtime,
                    sent_at=now - timedelta(seconds=1), started_at=now - timedelta(seconds=0.5),
                    finished_at=now, log_bytes=0, log_truncated=False,
                )
            )  # fmt: skip
    response = client.get("/metrics", headers=auth[role])
    if role is None:
        assert response.status_code == 401
        return
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text_ = response.text
    assert 'mainspring_runs{queue="q1",state="SUCCESS",task="tasks.add"} 1.0' in text_
    assert 'mainspring_run_duration_seconds_bucket{le="0.05"} 1.0' in text_
    assert 'mainspring_run_duration_seconds_bucket{le="5.0"} 2.0' in text_
    assert "mainspring_run_queue_wait_seconds_count 2.0" in text_
    assert 'mainspring_roles_alive{role="scheduler"} 0.0' in text_
    assert 'mainspring_workers{status="online"} 0.0' in text_
