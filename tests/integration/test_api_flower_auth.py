"""Every Flower-compatible endpoint as admin, operator, viewer and an anonymous caller.

Writes need the operator role, reads the viewer role; nobody gets in without credentials.
Worker commands name a worker nobody has seen, so an allowed caller gets Flower's 404 and no
worker is needed; submissions really publish (to Redis) and create runs.
"""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from mainspring.context import AppContext
from mainspring.core.states import Role
from mainspring.db.models import Run
from mainspring.services.users import create_user
from mainspring.settings import Settings
from tests.integration.conftest import PASSWORD

pytestmark = [pytest.mark.redis]

GHOST = "nobody@nowhere"
READ, WRITE = "read", "write"

# (method, path, body, status for a caller allowed to call it)
ENDPOINTS: list[tuple[str, str, bytes | None, str, int]] = [
    ("POST", "/api/task/async-apply/tasks.add", b'{"args": [1, 2]}', WRITE, 200),
    ("POST", "/api/task/send-task/tasks.add", b'{"args": [1, 2]}', WRITE, 200),
    ("POST", "/api/task/apply/tasks.add?timeout=0.05", b'{"args": [1, 2]}', WRITE, 200),
    ("GET", "/api/task/result/{run}", None, READ, 200),
    ("GET", "/api/task/info/{run}", None, READ, 200),
    ("POST", "/api/task/abort/{fresh}", None, WRITE, 200),
    ("POST", "/api/task/revoke/{fresh}?terminate=false", None, WRITE, 200),
    ("POST", f"/api/task/timeout/tasks.add?workername={GHOST}&soft=1", None, WRITE, 404),
    ("POST", f"/api/task/rate-limit/tasks.add?workername={GHOST}&ratelimit=1/s", None, WRITE, 404),
    ("GET", "/api/tasks", None, READ, 200),
    ("GET", "/api/task/types", None, READ, 200),
    ("GET", "/api/workers", None, READ, 200),
    ("POST", f"/api/worker/shutdown/{GHOST}", None, WRITE, 404),
    ("POST", f"/api/worker/pool/restart/{GHOST}", None, WRITE, 404),
    ("POST", f"/api/worker/pool/grow/{GHOST}?n=1", None, WRITE, 404),
    ("POST", f"/api/worker/pool/shrink/{GHOST}?n=1", None, WRITE, 404),
    ("POST", f"/api/worker/pool/autoscale/{GHOST}?min=1&max=2", None, WRITE, 404),
    ("POST", f"/api/worker/queue/add-consumer/{GHOST}?queue=extra", None, WRITE, 404),
    ("POST", f"/api/worker/queue/cancel-consumer/{GHOST}?queue=extra", None, WRITE, 404),
    ("GET", "/api/queues/length", None, READ, 200),
]
ROLES: list[Role | None] = [Role.ADMIN, Role.OPERATOR, Role.VIEWER, None]


@pytest.fixture
def settings(data_dir: Path, redis_url: str) -> Settings:
    return Settings(
        data_dir=data_dir,
        secret_key="test-secret-key",
        timezone="Asia/Shanghai",
        broker_url=redis_url,
    )


def _runs(ctx: AppContext) -> int:
    with ctx.session() as session:
        return int(session.scalar(select(func.count()).select_from(Run)) or 0)


def _expected(kind: str, allowed: int, role: Role | None) -> int:
    if role is None:
        return 401
    if kind == WRITE and role is Role.VIEWER:
        return 403
    return allowed


@pytest.mark.parametrize(
    ("method", "path", "body", "kind", "allowed"),
    ENDPOINTS,
    ids=[f"{m} {p.split('?')[0]}" for m, p, *_ in ENDPOINTS],
)
def test_flower_endpoint_checks_the_callers_role(
    client: TestClient,
    ctx: AppContext,
    auth: dict[Role | None, dict[str, str]],
    method: str,
    path: str,
    body: bytes | None,
    kind: str,
    allowed: int,
) -> None:
    """One endpoint, called by each role in turn (one app and database for the four)."""
    submitted = client.post(
        "/api/task/async-apply/tasks.add", content=b'{"args": [5, 6]}', headers=auth[Role.ADMIN]
    )
    for role in ROLES:
        who = role.value if role else "anonymous"
        url = path.format(run=submitted.json()["task-id"], fresh=uuid.uuid4())
        before = _runs(ctx)

        answer = client.request(method, url, content=body, headers=auth[role])

        assert answer.status_code == _expected(kind, allowed, role), (who, answer.text)
        assert answer.headers["content-type"].startswith("application/json"), who
        if role is None:
            assert answer.headers["www-authenticate"].startswith("Basic")
            assert "authentication required" in answer.json()["detail"]
        if answer.status_code in (401, 403):
            assert _runs(ctx) == before, f"a refused {who} submission created a run"
        elif "apply" in url or "send-task" in url:
            assert _runs(ctx) == before + 1, who


def test_http_basic_with_a_users_password_submits_as_that_user(
    client: TestClient, ctx: AppContext
) -> None:
    """``curl -u root:PASS``: HTTP Basic with a user's own name and password."""
    with ctx.session() as session:
        create_user(session, "root", PASSWORD, Role.OPERATOR)
    good = base64.b64encode(f"root:{PASSWORD}".encode()).decode()
    wrong = base64.b64encode(b"root:not-the-password").decode()

    ok = client.post(
        "/api/task/send-task/remote.tasks.http",
        content=b'{"args": ["www.test.com"]}',
        headers={"Authorization": f"Basic {good}"},
    )
    refused = client.post(
        "/api/task/send-task/remote.tasks.http",
        content=b'{"args": ["www.test.com"]}',
        headers={"Authorization": f"Basic {wrong}"},
    )

    assert ok.status_code == 200, ok.text
    with ctx.session() as session:
        run = session.get(Run, ok.json()["task-id"])
        assert run is not None
        assert (run.task, run.args, run.options.get("submitted_by")) == (
            "remote.tasks.http",
            ["www.test.com"],
            "root",
        )
    assert refused.status_code == 401
    assert refused.json() == {"detail": "invalid credentials"}


def test_a_viewer_may_read_what_an_operator_submitted(
    client: TestClient, auth: dict[Role | None, dict[str, str]]
) -> None:
    sent = client.post(
        "/api/task/async-apply/tasks.add", content=b'{"args": [1, 2]}', headers=auth[Role.OPERATOR]
    ).json()

    info = client.get(f"/api/task/info/{sent['task-id']}", headers=auth[Role.VIEWER])
    listed = client.get("/api/tasks", headers=auth[Role.VIEWER])

    assert info.json()["uuid"] == sent["task-id"]
    assert list(listed.json()) == [sent["task-id"]]
