"""What the fast submission path keeps: every accepted submission has its committed run and
its message, a broker failure fails the batch's requests and marks their runs, and the
bearer-token cache never outlives a revocation by more than its TTL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
from celery import Celery
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from mainspring.api.app import create_app
from mainspring.context import AppContext
from mainspring.core.states import Role, RunState
from mainspring.db.models import ApiToken, Run
from mainspring.services.auth import TOKEN_CACHE, hash_token
from mainspring.settings import Settings
from mainspring.worker.app import make_celery

pytestmark = [pytest.mark.redis]

ECHO = {"task": "mainspring.echo", "kwargs": {"message": "hi"}}
QUEUE = f"test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def settings(data_dir: Any, redis_url: str) -> Settings:
    return Settings(data_dir=data_dir, secret_key="k", broker_url=redis_url, default_queue=QUEUE)


@pytest.fixture
def client(celery_client: TestClient) -> TestClient:
    return celery_client


def _bearer(tokens: dict[Role, str], role: Role = Role.OPERATOR) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[role]}"}


def test_concurrent_submissions_each_commit_and_publish_their_run(
    client: TestClient, ctx: AppContext, tokens: dict[Role, str], redis_url: str
) -> None:
    paths = ["/api/v1/tasks", "/api/task/async-apply/mainspring.echo"] * 20
    bodies = {"/api/v1/tasks": ECHO, "/api/task/async-apply/mainspring.echo": {"args": []}}

    def post(path: str) -> str:
        response = client.post(path, json=bodies[path], headers=_bearer(tokens))
        assert response.status_code in (200, 202), response.text
        body = response.json()
        return str(body.get("id") or body["task-id"])

    with ThreadPoolExecutor(max_workers=16) as pool:
        ids = list(pool.map(post, paths))
    assert len(set(ids)) == len(paths)
    with ctx.session() as s:
        rows = s.execute(select(Run.id, Run.state).where(Run.id.in_(ids))).all()
        stored = dict(rows)
    assert stored == dict.fromkeys(ids, RunState.SENT.value)
    assert redis.Redis.from_url(redis_url).llen(QUEUE) == len(paths)


@pytest.fixture
def unreachable_broker(settings: Settings) -> Iterator[Celery]:
    app = make_celery(settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"}))
    app.conf.broker_connection_timeout = 0.2
    app.conf.task_publish_retry = False
    yield app
    app.close()


def test_a_broker_failure_answers_503_and_marks_the_runs_failed(
    ctx: AppContext, tokens: dict[Role, str], unreachable_broker: Celery
) -> None:
    web = create_app(ctx)
    web.state.celery = unreachable_broker
    with TestClient(web) as client:
        response = client.post("/api/v1/tasks", json=ECHO, headers=_bearer(tokens))
    assert response.status_code == 503
    assert "broker" in response.json()["detail"]
    with ctx.session() as s:
        runs = list(s.scalars(select(Run)))
    assert [r.state for r in runs] == [RunState.FAILURE.value]
    assert (runs[0].exception_message or "").startswith("could not publish: ")


def test_a_token_revoked_here_is_refused_at_once(
    client: TestClient, tokens: dict[Role, str]
) -> None:
    headers = _bearer(tokens)
    assert client.get("/api/v1/runs", headers=headers).status_code == 200  # now cached
    listed = client.get("/api/v1/tokens", headers=headers).json()["items"]
    (token_id,) = [t["id"] for t in listed if t["username"] == "operator"]
    assert client.post(f"/api/v1/tokens/{token_id}/revoke", headers=headers).status_code == 200
    assert client.get("/api/v1/runs", headers=headers).status_code == 401


def test_a_token_revoked_elsewhere_is_refused_once_the_cache_ttl_passes(
    client: TestClient, ctx: AppContext, tokens: dict[Role, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process (the CLI, a second web process) revokes with no event reaching this
    one; a raw UPDATE here does the same. The cached answer is used until the TTL passes."""
    headers = _bearer(tokens)
    monkeypatch.setattr(TOKEN_CACHE, "ttl_s", 3600.0)
    assert client.get("/api/v1/runs", headers=headers).status_code == 200
    with ctx.engine.begin() as conn:
        conn.execute(
            text(
                f"UPDATE {ApiToken.__tablename__} SET revoked_at = created_at WHERE token_hash = :h"
            ),
            {"h": hash_token(tokens[Role.OPERATOR])},
        )
    assert client.get("/api/v1/runs", headers=headers).status_code == 200  # still cached
    monkeypatch.setattr(TOKEN_CACHE, "ttl_s", 0.0)  # as if the TTL had passed
    assert client.get("/api/v1/runs", headers=headers).status_code == 401


def test_deactivating_a_user_refuses_their_cached_token_at_once(
    client: TestClient, tokens: dict[Role, str]
) -> None:
    admin, headers = _bearer(tokens, Role.ADMIN), _bearer(tokens)
    assert client.get("/api/v1/runs", headers=headers).status_code == 200
    users = client.get("/api/v1/users", headers=admin).json()["items"]
    (operator_id,) = [u["id"] for u in users if u["username"] == "operator"]
    response = client.patch(f"/api/v1/users/{operator_id}", json={"active": False}, headers=admin)
    assert response.status_code == 200, response.text
    assert client.get("/api/v1/runs", headers=headers).status_code == 401
