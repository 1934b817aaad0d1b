"""``/api/v1/tasks`` on a real Redis broker (no worker needed): submission now and later,
validation that names the field, idempotency keys (also under a race), task types, roles."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from mainspring.api.app import create_app
from mainspring.context import AppContext
from mainspring.core.states import Role, WorkerStatus
from mainspring.db.models import Run, Worker
from mainspring.services import tasks as task_service
from mainspring.services.clock import utcnow
from mainspring.settings import Settings
from mainspring.worker.app import make_celery

pytestmark = [pytest.mark.redis]

Auth = dict[Role | None, dict[str, str]]
ECHO = {"task": "mainspring.echo", "kwargs": {"message": "hi"}}
# The default queue of this module: no other test's worker on a shared Redis consumes it.
QUEUE = f"test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def settings(data_dir: Any, redis_url: str) -> Settings:
    return Settings(
        data_dir=data_dir,
        secret_key="k",
        timezone="Asia/Shanghai",
        broker_url=redis_url,
        default_queue=QUEUE,
    )


@pytest.fixture
def client(celery_client: TestClient) -> TestClient:
    return celery_client


@pytest.fixture
def broker(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def _runs(ctx: AppContext) -> list[Run]:
    with ctx.session() as s:
        return list(s.scalars(select(Run).order_by(Run.created_at)))


@pytest.mark.parametrize(
    ("role", "status"),
    [(Role.ADMIN, 202), (Role.OPERATOR, 202), (Role.VIEWER, 403), (None, 401)],
)
def test_submitting_needs_the_operator_role(
    client: TestClient, auth: Auth, ctx: AppContext, role: Role | None, status: int
) -> None:
    response = client.post("/api/v1/tasks", json=ECHO, headers=auth[role])
    assert response.status_code == status
    assert len(_runs(ctx)) == (1 if status == 202 else 0)


@pytest.mark.parametrize(
    ("role", "status"),
    [(Role.ADMIN, 200), (Role.OPERATOR, 200), (Role.VIEWER, 200), (None, 401)],
)
def test_task_types_are_readable_by_every_role(
    client: TestClient, auth: Auth, role: Role | None, status: int
) -> None:
    response = client.get("/api/v1/tasks/types", headers=auth[role])
    assert response.status_code == status
    if status == 200:
        assert "mainspring.shell" in response.json()["builtin_schemas"]


def test_a_submission_answers_with_the_run_id_and_publishes_it(
    client: TestClient, auth: Auth, ctx: AppContext, broker: redis.Redis
) -> None:
    response = client.post("/api/v1/tasks", json=ECHO, headers=auth[Role.OPERATOR])
    assert response.status_code == 202
    body = response.json()
    assert response.headers["location"] == f"/api/v1/runs/{body['id']}"
    assert (body["state"], body["queue"], body["replayed"]) == ("SENT", QUEUE, False)
    (run,) = _runs(ctx)
    assert (run.id, run.trigger, run.kwargs) == (body["id"], "api", {"message": "hi"})
    assert run.options["submitted_by"] == "operator"
    assert broker.llen(QUEUE) == 1


def test_a_countdown_stores_a_scheduled_run_with_its_options(
    client: TestClient, auth: Auth, ctx: AppContext, broker: redis.Redis
) -> None:
    options = {"countdown": 3600, "priority": 7, "retry": {"retries": 2}, "queue": "reports"}
    before = utcnow()
    response = client.post(
        "/api/v1/tasks", json={**ECHO, "options": options}, headers=auth[Role.OPERATOR]
    )
    assert response.status_code == 202
    assert response.json()["state"] == "SCHEDULED"
    (run,) = _runs(ctx)
    assert run.scheduled_for is not None
    assert timedelta(minutes=59) < run.scheduled_for - before < timedelta(minutes=61)
    assert run.queue == "reports"
    assert run.options["priority"] == 7
    assert run.options["retry"]["retries"] == 2
    assert broker.llen("reports") == 0  # the scheduler publishes it when due


def test_an_eta_in_the_past_is_sent_now(
    client: TestClient, auth: Auth, broker: redis.Redis
) -> None:
    eta = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    body = {**ECHO, "options": {"eta": eta}}
    response = client.post("/api/v1/tasks", json=body, headers=auth[Role.OPERATOR])
    assert response.json()["state"] == "SENT"
    assert broker.llen(QUEUE) == 1


def test_a_worker_option_sends_to_that_workers_own_queue(
    client: TestClient, auth: Auth, broker: redis.Redis
) -> None:
    body = {**ECHO, "options": {"worker": "w1@db-01"}}
    response = client.post("/api/v1/tasks", json=body, headers=auth[Role.OPERATOR])
    assert response.json()["queue"] == "host.w1@db-01"
    assert broker.llen("host.w1@db-01") == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"task": "1bad name"}, "task"),
        ({"task": "mainspring.echo", "args": [1]}, "args"),
        ({"task": "mainspring.shell", "kwargs": {"cwd": "/"}}, "kwargs"),
        ({**ECHO, "options": {"queue": "a", "worker": "w@h"}}, "options.worker"),
        ({**ECHO, "options": {"queue": "bad queue"}}, "options.queue"),
        ({**ECHO, "options": {"countdown": 5, "eta": "2030-01-01T00:00:00Z"}}, "options.countdown"),
        ({**ECHO, "options": {"broadcast": True, "countdown": 5}}, "options.eta"),
        ({**ECHO, "options": {"broadcast": True, "worker": "w@h"}}, "options.worker"),
    ],
)
def test_bad_submissions_are_422s_naming_the_field(
    client: TestClient, auth: Auth, ctx: AppContext, body: dict[str, Any], field: str
) -> None:
    response = client.post("/api/v1/tasks", json=body, headers=auth[Role.OPERATOR])
    assert response.status_code == 422
    assert response.json()["detail"]["field"] == field
    assert _runs(ctx) == []


@pytest.mark.parametrize(
    ("options", "loc"),
    [
        ({"priority": 10}, ["body", "options", "priority"]),
        ({"eta": "2030-01-01T00:00:00"}, ["body", "options", "eta"]),
        ({"countdown": -1}, ["body", "options", "countdown"]),
        ({"colour": "red"}, ["body", "options", "colour"]),
        ({"expires": 1e12}, ["body", "options", "expires"]),
    ],
)
def test_bad_options_are_422s_naming_the_option(
    client: TestClient, auth: Auth, options: dict[str, Any], loc: list[str]
) -> None:
    body = {**ECHO, "options": options}
    response = client.post("/api/v1/tasks", json=body, headers=auth[Role.OPERATOR])
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == loc


def test_a_task_no_worker_registered_is_refused(
    client: TestClient, auth: Auth, ctx: AppContext
) -> None:
    _register(ctx, "w1@h", ["tasks.add"], WorkerStatus.ONLINE)
    body = {"task": "tasks.mul", "args": [2, 3]}
    response = client.post("/api/v1/tasks", json=body, headers=auth[Role.OPERATOR])
    assert response.status_code == 422
    assert response.json()["detail"]["field"] == "task"


def test_a_retried_request_with_the_same_key_returns_the_first_run(
    client: TestClient, auth: Auth, ctx: AppContext, broker: redis.Redis
) -> None:
    body = {**ECHO, "idempotency_key": "order-42"}
    first = client.post("/api/v1/tasks", json=body, headers=auth[Role.OPERATOR])
    again = client.post("/api/v1/tasks", json=body, headers=auth[Role.ADMIN])
    by_header = client.post(
        "/api/v1/tasks", json=ECHO, headers={**auth[Role.OPERATOR], "Idempotency-Key": "order-42"}
    )
    assert first.status_code == 202
    assert (again.status_code, by_header.status_code) == (200, 200)
    assert first.json()["id"] == again.json()["id"] == by_header.json()["id"]
    assert again.json()["replayed"] is True
    assert len(_runs(ctx)) == 1
    assert broker.llen(QUEUE) == 1


def test_an_idempotency_key_for_another_task_is_a_conflict(
    client: TestClient, auth: Auth, ctx: AppContext
) -> None:
    headers = {**auth[Role.OPERATOR], "Idempotency-Key": "k1"}
    assert client.post("/api/v1/tasks", json=ECHO, headers=headers).status_code == 202
    other = {"task": "mainspring.http", "kwargs": {"url": "http://127.0.0.1:1/"}}
    response = client.post("/api/v1/tasks", json=other, headers=headers)
    assert response.status_code == 409
    assert "idempotency_key" in response.json()["detail"]
    assert len(_runs(ctx)) == 1


def test_a_body_key_that_differs_from_the_header_is_a_422(client: TestClient, auth: Auth) -> None:
    body = {**ECHO, "idempotency_key": "a"}
    headers = {**auth[Role.OPERATOR], "Idempotency-Key": "b"}
    response = client.post("/api/v1/tasks", json=body, headers=headers)
    assert response.status_code == 422
    assert response.json()["detail"]["field"] == "idempotency_key"


@pytest.fixture
def race_settings(data_dir: Any, redis_url: str, database_url: str) -> Settings:
    return Settings(
        data_dir=data_dir,
        secret_key="k",
        broker_url=redis_url,
        database_url=database_url,
        default_queue=QUEUE,
    )


def test_concurrent_requests_with_one_key_create_one_run(
    race_settings: Settings,
    fast_argon2: None,
    monkeypatch: pytest.MonkeyPatch,
    broker: redis.Redis,
) -> None:
    """Both requests pass the early look-up before either inserts (a barrier holds them),
    so the unique key decides: one insert wins, the other answers with the winner's run."""
    from mainspring.services.auth import create_api_token
    from mainspring.services.users import create_user

    ctx = AppContext.open(race_settings)
    celery = make_celery(race_settings)
    barrier = threading.Barrier(2, timeout=20)
    checked = task_service.check_submission

    def check_then_wait(*args: Any) -> str:
        queue = checked(*args)
        barrier.wait()
        return queue

    monkeypatch.setattr(task_service, "check_submission", check_then_wait)
    try:
        with ctx.session() as s:
            secret, _ = create_api_token(
                s, create_user(s, "op", "pw-123456789", Role.OPERATOR), "t"
            )
        web = create_app(ctx)
        web.state.celery = celery
        headers = {"Authorization": f"Bearer {secret}", "Idempotency-Key": "race-1"}
        with TestClient(web) as client, ThreadPoolExecutor(2) as pool:
            futures = [
                pool.submit(client.post, "/api/v1/tasks", json=ECHO, headers=headers)
                for _ in range(2)
            ]
            answers = [f.result(timeout=60) for f in futures]
        assert sorted(a.status_code for a in answers) == [200, 202]
        assert answers[0].json()["id"] == answers[1].json()["id"]
        with ctx.session() as s:
            assert s.scalar(select(func.count()).select_from(Run)) == 1
        assert broker.llen(QUEUE) == 1
    finally:
        celery.close()
        ctx.close()


def _register(ctx: AppContext, host: str, tasks: list[str], status: WorkerStatus) -> None:
    now = utcnow()
    with ctx.session() as s:
        s.merge(
            Worker(
                hostname=host,
                status=status.value,
                queues=["default"],
                registered_tasks=tasks,
                first_seen_at=now,
                last_heartbeat_at=now,
                updated_at=now,
                active=0,
                processed=0,
                software={},
                capabilities={},
            )
        )


def test_task_types_list_registered_names_with_their_hosts_and_builtin_schemas(
    client: TestClient, auth: Auth, ctx: AppContext
) -> None:
    _register(ctx, "a@h", ["tasks.add", "tasks.sum"], WorkerStatus.ONLINE)
    _register(ctx, "b@h", ["tasks.add"], WorkerStatus.OFFLINE)
    body = client.get("/api/v1/tasks/types", headers=auth[Role.VIEWER]).json()
    items = {item["name"]: item for item in body["items"]}
    assert items["tasks.add"]["workers"] == ["a@h", "b@h"]
    assert items["tasks.add"]["online_workers"] == ["a@h"]
    assert items["tasks.add"]["builtin"] is False
    assert items["mainspring.http"]["builtin"] is True
    shell = body["builtin_schemas"]["mainspring.shell"]
    assert {"command", "script", "timeout"} <= set(shell["properties"])
    assert body["builtin_schemas"]["mainspring.http"]["required"] == ["url"]


def test_without_a_broker_a_submission_is_a_503_saying_what_to_set(
    data_dir: Any, fast_argon2: None
) -> None:
    from mainspring.services.auth import create_api_token
    from mainspring.services.users import create_user

    ctx = AppContext.open(Settings(data_dir=data_dir / "no-broker", secret_key="k"))
    try:
        with ctx.session() as s:
            secret, _ = create_api_token(
                s, create_user(s, "op", "pw-123456789", Role.OPERATOR), "t"
            )
        with TestClient(create_app(ctx)) as client:
            response = client.post(
                "/api/v1/tasks", json=ECHO, headers={"Authorization": f"Bearer {secret}"}
            )
        assert response.status_code == 503
        assert "MAINSPRING_BROKER_URL" in response.json()["detail"]
    finally:
        ctx.close()
