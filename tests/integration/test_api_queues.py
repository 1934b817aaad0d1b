"""``/api/v1/queues``: lengths on Redis (priority sub-queues included) and RabbitMQ (passive
declare), purge confirmed by name (admins only, audited), roles."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from fastapi.testclient import TestClient
from sqlalchemy import select

from mainspring.api.app import create_app
from mainspring.context import AppContext
from mainspring.core.states import Role
from mainspring.db.models import AuditEntry
from mainspring.services.jobs import JobSpec, create_job
from mainspring.settings import Settings
from mainspring.worker.app import make_celery
from tests.integration.test_api_workers import register

Auth = dict[Role | None, dict[str, str]]
# Queue names of this module's own: no other test's worker on a shared broker consumes them.
SUFFIX = "api-queues"  # fixed: test ids must match across xdist workers (each has its own Redis db)
QUEUE, REPORTS, LENGTHS, DOOMED = (f"{n}-{SUFFIX}" for n in ("default", "reports", "len", "doomed"))


def make_client(ctx: AppContext, celery: Celery) -> TestClient:
    web = create_app(ctx)
    web.state.celery = celery
    return TestClient(web)


def submit(client: TestClient, auth: Auth, queue: str, priority: int | None = None) -> None:
    options: dict[str, Any] = {"queue": queue}
    if priority is not None:
        options["priority"] = priority
    body = {"task": "mainspring.echo", "kwargs": {}, "options": options}
    response = client.post("/api/v1/tasks", json=body, headers=auth[Role.OPERATOR])
    assert response.status_code == 202, response.text


# --- Redis ---------------------------------------------------------------------------------


@pytest.fixture
def settings(data_dir: Any, redis_url: str) -> Settings:
    return Settings(
        data_dir=data_dir,
        secret_key="k",
        broker_url=redis_url,
        default_queue=QUEUE,
        worker_queues=[QUEUE],
    )


@pytest.fixture
def client(ctx: AppContext, tokens: dict[Role, str], celery: Celery) -> Iterator[TestClient]:
    with make_client(ctx, celery) as client:
        yield client


@pytest.mark.redis
@pytest.mark.parametrize(
    ("method", "path", "body", "expected"),
    [
        ("GET", "/api/v1/queues", None, (200, 200, 200, 401)),
        ("GET", f"/api/v1/queues/{QUEUE}", None, (200, 200, 200, 401)),
        ("POST", f"/api/v1/queues/{QUEUE}/purge", {"confirm": QUEUE}, (200, 403, 403, 401)),
    ],
)
def test_every_queue_endpoint_as_admin_operator_viewer_and_anonymous(
    client: TestClient,
    auth: Auth,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    expected: tuple[int, ...],
) -> None:
    for role, status in zip([Role.ADMIN, Role.OPERATOR, Role.VIEWER, None], expected, strict=True):
        response = client.request(method, path, json=body, headers=auth[role])
        assert response.status_code == status, (role, response.text)


@pytest.mark.redis
def test_redis_lengths_count_every_priority_sub_queue(client: TestClient, auth: Auth) -> None:
    # Mainspring priorities 9 (highest) and none go to kombu's step-0 list, 0 to step 9.
    for priority in (None, 9, 0):
        submit(client, auth, LENGTHS, priority)
    body = client.get(f"/api/v1/queues/{LENGTHS}", headers=auth[Role.VIEWER]).json()
    assert body["messages"] == 3
    assert body["by_priority"] == {"0": 2, "3": 0, "6": 0, "9": 1}
    assert body["consumers"] is None


@pytest.mark.redis
def test_known_queues_are_listed_with_their_workers(
    client: TestClient, auth: Auth, ctx: AppContext
) -> None:
    with ctx.session() as s:
        trigger = {"kind": "cron", "expr": "0 3 * * *"}
        spec = JobSpec(
            name="r", task="reports.build", trigger=trigger, timezone="UTC", queue=REPORTS
        )
        create_job(s, spec)
    register(ctx, "w1@h", queues=[QUEUE, "host.w1@h"])
    submit(client, auth, REPORTS)
    body = client.get("/api/v1/queues", headers=auth[Role.VIEWER]).json()
    assert body["broker"] == "redis"
    queues = {q["name"]: q for q in body["items"]}
    assert set(queues) == {QUEUE, REPORTS, "host.w1@h"}
    assert queues[QUEUE]["workers"] == ["w1@h"]
    assert (queues[REPORTS]["messages"], queues[REPORTS]["workers"]) == (1, [])


@pytest.mark.redis
def test_purging_needs_the_name_repeated_and_is_audited(
    client: TestClient, auth: Auth, ctx: AppContext
) -> None:
    for priority in (None, 0):
        submit(client, auth, DOOMED, priority)
    admin = auth[Role.ADMIN]
    url = f"/api/v1/queues/{DOOMED}"
    wrong = client.post(f"{url}/purge", json={"confirm": "doomed"}, headers=admin)
    assert wrong.status_code == 422
    assert wrong.json()["detail"]["field"] == "confirm"
    missing = client.post(f"{url}/purge", json={}, headers=admin)
    assert missing.json()["detail"][0]["loc"] == ["body", "confirm"]
    done = client.post(f"{url}/purge", json={"confirm": DOOMED}, headers=admin)
    assert done.json() == {"name": DOOMED, "purged": 2}
    after = client.get(url, headers=admin).json()
    assert after["messages"] == 0
    with ctx.session() as s:
        (entry,) = s.scalars(select(AuditEntry).where(AuditEntry.action == "purge")).all()
    assert (entry.actor, entry.object_type, entry.object_id) == ("admin", "queue", DOOMED)
    assert entry.changes == {"v": 1, "before": {"messages": 2}, "after": {"messages": 0}}


@pytest.mark.redis
def test_a_bad_queue_name_is_a_422(client: TestClient, auth: Auth) -> None:
    response = client.get("/api/v1/queues/bad%20name", headers=auth[Role.VIEWER])
    assert response.status_code == 422
    assert response.json()["detail"]["field"] == "name"


@pytest.mark.redis
def test_an_unreachable_broker_is_a_503(
    ctx: AppContext, tokens: dict[Role, str], auth: Auth, data_dir: Any
) -> None:
    dead = make_celery(Settings(data_dir=data_dir, broker_url="redis://127.0.0.1:1/0"))
    try:
        with make_client(ctx, dead) as client:
            response = client.get("/api/v1/queues", headers=auth[Role.VIEWER])
        assert response.status_code == 503
        assert "cannot reach the broker" in response.json()["detail"]
    finally:
        dead.close()


# --- RabbitMQ ------------------------------------------------------------------------------


@pytest.fixture
def rabbit(
    data_dir: Any, rabbitmq_url: str, ctx: AppContext, tokens: dict[Role, str]
) -> Iterator[tuple[TestClient, str]]:
    """A client whose Celery app is on RabbitMQ, and a queue name of this test's own."""
    app = make_celery(Settings(data_dir=data_dir, broker_url=rabbitmq_url))
    queue = f"ms-test-{uuid.uuid4().hex[:8]}"
    try:
        with make_client(ctx, app) as client:
            yield client, queue
    finally:
        with app.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue)
        app.close()


@pytest.mark.rabbitmq
@pytest.mark.redis  # the module's ``settings`` (for the database side) name Redis
def test_rabbitmq_lengths_come_from_a_passive_declare(
    rabbit: tuple[TestClient, str], auth: Auth
) -> None:
    client, queue = rabbit
    for _ in range(2):
        submit(client, auth, queue)
    body = client.get(f"/api/v1/queues/{queue}", headers=auth[Role.VIEWER]).json()
    assert (body["messages"], body["consumers"], body["exists"]) == (2, 0, True)
    missing = client.get(f"/api/v1/queues/{queue}-none", headers=auth[Role.VIEWER]).json()
    assert (missing["messages"], missing["exists"]) == (None, False)
    listing = client.get("/api/v1/queues", headers=auth[Role.VIEWER]).json()
    assert listing["broker"] == "amqp"
    purged = client.post(
        f"/api/v1/queues/{queue}/purge", json={"confirm": queue}, headers=auth[Role.ADMIN]
    )
    assert purged.json() == {"name": queue, "purged": 2}
    gone = client.post(
        f"/api/v1/queues/{queue}-none/purge",
        json={"confirm": f"{queue}-none"},
        headers=auth[Role.ADMIN],
    )
    assert gone.status_code == 404
