"""``/api/v1/workers`` without live workers: the registry, roles on every endpoint, 404 for
an unknown worker and 504 for one that does not answer, bad input as 422s."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from celery import Celery
from fastapi.testclient import TestClient

from mainspring.api.app import create_app
from mainspring.context import AppContext
from mainspring.core.states import Role, WorkerStatus
from mainspring.db.models import Worker
from mainspring.services.clock import utcnow
from mainspring.settings import Settings

pytestmark = [pytest.mark.redis]

Auth = dict[Role | None, dict[str, str]]
GHOST = "ghost@h"  # in the registry, but no such process answers
QUICK = "?timeout=0.1"


@pytest.fixture
def settings(data_dir: Any, redis_url: str) -> Settings:
    return Settings(data_dir=data_dir, secret_key="k", broker_url=redis_url)


def register(
    ctx: AppContext,
    host: str,
    status: WorkerStatus = WorkerStatus.ONLINE,
    queues: list[str] | None = None,
    **values: Any,
) -> None:
    """A row as the recorder keeps it from heartbeats and inspection."""
    now = utcnow()
    row = {
        "status": status.value,
        "queues": queues or ["default", f"host.{host}"],
        "registered_tasks": ["tasks.add"],
        "first_seen_at": now - timedelta(hours=1),
        "last_heartbeat_at": now,
        "updated_at": now,
        "active": 0,
        "processed": 0,
        "software": {},
        "capabilities": {},
        **values,
    }
    with ctx.session() as s:
        s.merge(Worker(hostname=host, **row))


@pytest.fixture
def client(ctx: AppContext, tokens: dict[Role, str], celery: Celery) -> Iterator[TestClient]:
    register(ctx, GHOST)
    web = create_app(ctx)
    web.state.celery = celery
    with TestClient(web) as client:
        yield client


READ = {Role.ADMIN: 200, Role.OPERATOR: 200, Role.VIEWER: 200, None: 401}
ASK = {Role.ADMIN: 504, Role.OPERATOR: 504, Role.VIEWER: 504, None: 401}
OPERATE = {Role.ADMIN: 504, Role.OPERATOR: 504, Role.VIEWER: 403, None: 401}
ADMIN = {Role.ADMIN: 504, Role.OPERATOR: 403, Role.VIEWER: 403, None: 401}
ENDPOINTS = [
    ("GET", "/api/v1/workers", None, READ),
    ("GET", f"/api/v1/workers/{GHOST}", None, READ),
    ("GET", f"/api/v1/workers/{GHOST}/runs{QUICK}", None, ASK),
    ("POST", f"/api/v1/workers/{GHOST}/ping{QUICK}", None, ASK),
    ("POST", f"/api/v1/workers/{GHOST}/pool/grow{QUICK}", {"n": 1}, OPERATE),
    ("POST", f"/api/v1/workers/{GHOST}/pool/shrink{QUICK}", {"n": 1}, OPERATE),
    ("POST", f"/api/v1/workers/{GHOST}/pool/autoscale{QUICK}", {"max": 4, "min": 1}, OPERATE),
    ("POST", f"/api/v1/workers/{GHOST}/consumers{QUICK}", {"queue": "extra"}, OPERATE),
    ("DELETE", f"/api/v1/workers/{GHOST}/consumers/extra{QUICK}", None, OPERATE),
    ("POST", f"/api/v1/workers/{GHOST}/shutdown{QUICK}", None, ADMIN),
]


@pytest.mark.parametrize(("method", "path", "body", "expected"), ENDPOINTS)
def test_every_worker_endpoint_as_admin_operator_viewer_and_anonymous(
    client: TestClient,
    auth: Auth,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    expected: dict[Role | None, int],
) -> None:
    """One fixture per endpoint (it is the costly part); every role asks in turn."""
    for role in [Role.ADMIN, Role.OPERATOR, Role.VIEWER, None]:
        response = client.request(method, path, json=body, headers=auth[role])
        assert response.status_code == expected[role], (role, response.text)
        assert response.headers["content-type"] == "application/json"


def test_a_worker_that_does_not_answer_is_a_504_saying_so(client: TestClient, auth: Auth) -> None:
    response = client.post(f"/api/v1/workers/{GHOST}/ping?timeout=0.2", headers=auth[Role.VIEWER])
    assert response.status_code == 504
    assert response.json()["detail"].startswith(f"worker {GHOST} did not reply within 0.2 s")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/workers/nobody@h", None),
        ("POST", "/api/v1/workers/nobody@h/ping", None),
        ("POST", "/api/v1/workers/nobody@h/pool/grow", {"n": 1}),
        ("POST", "/api/v1/workers/nobody@h/shutdown", None),
    ],
)
def test_an_unknown_worker_is_a_404(
    client: TestClient, auth: Auth, method: str, path: str, body: dict[str, Any] | None
) -> None:
    response = client.request(method, path, json=body, headers=auth[Role.ADMIN])
    assert response.status_code == 404
    assert response.json() == {"detail": "no worker named 'nobody@h' has been seen"}


def test_workers_are_listed_by_name_with_their_registry_fields(
    client: TestClient, auth: Auth, ctx: AppContext
) -> None:
    register(
        ctx,
        "a@db-01",
        pool="prefork",
        concurrency=4,
        active=2,
        processed=17,
        loadavg=[0.5, 0.4, 0.3],
    )
    register(ctx, "z@old", WorkerStatus.OFFLINE)
    items = client.get("/api/v1/workers", headers=auth[Role.VIEWER]).json()["items"]
    assert [w["hostname"] for w in items] == ["a@db-01", GHOST, "z@old"]
    first = items[0]
    assert (first["status"], first["pool"], first["concurrency"]) == ("online", "prefork", 4)
    assert (first["active"], first["processed"]) == (2, 17)
    assert first["queues"] == ["default", "host.a@db-01"]
    assert first["last_heartbeat_at"] is not None
    offline = client.get(
        "/api/v1/workers", params={"status": "offline"}, headers=auth[Role.VIEWER]
    ).json()
    assert [w["hostname"] for w in offline["items"]] == ["z@old"]
    detail = client.get("/api/v1/workers/a@db-01", headers=auth[Role.VIEWER]).json()
    assert detail["registered_tasks"] == ["tasks.add"]


@pytest.mark.parametrize(
    ("method", "path", "body", "loc"),
    [
        ("GET", "/api/v1/workers?status=sleeping", None, "status"),
        ("POST", f"/api/v1/workers/{GHOST}/pool/grow", {"n": 0}, ["body", "n"]),
        ("POST", f"/api/v1/workers/{GHOST}/pool/autoscale", {"max": 2, "min": 3}, "min"),
        ("POST", f"/api/v1/workers/{GHOST}/consumers", {"queue": "bad queue"}, "queue"),
        ("POST", f"/api/v1/workers/{GHOST}/ping?timeout=0", None, ["query", "timeout"]),
    ],
)
def test_bad_worker_input_is_a_422_naming_the_field(
    client: TestClient,
    auth: Auth,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    loc: str | list[str],
) -> None:
    response = client.request(method, path, json=body, headers=auth[Role.ADMIN])
    assert response.status_code == 422
    detail = response.json()["detail"]
    if isinstance(loc, str):
        assert detail["field"] == loc
    else:
        assert detail[0]["loc"] == loc
