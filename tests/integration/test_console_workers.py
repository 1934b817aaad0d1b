"""The console's workers page and its remote control: every role sees the registry, operators
resize pools and move consumers, only admins shut a worker down (after a confirmation page),
and a worker that does not answer is a message on the page, never an error page."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from mainspring.console import workers as console_workers
from mainspring.context import AppContext
from mainspring.core.states import Role
from mainspring.db.models import AuditEntry
from mainspring.services.clock import utcnow
from tests.conftest import WorkerPool
from tests.helpers import poll
from tests.integration.test_api_workers import register
from tests.integration.test_console_dashboard import add_worker
from tests.integration.test_console_jobs import ROLES, Console, csrf_of
from tests.integration.test_console_run_actions import console as console  # the fixtures
from tests.integration.test_console_run_actions import settings as settings

pytestmark = [pytest.mark.redis]

HOST = "w1@prod"
ACTIONS = [
    ("pool/grow", {"n": "1"}),
    ("pool/shrink", {"n": "1"}),
    ("consumers/add", {"queue": "reports"}),
    ("consumers/cancel", {"queue": "default"}),
    ("shutdown", {}),
]


def seed(ctx: AppContext) -> None:
    add_worker(ctx, HOST, queues=["default", "<i>q"], concurrency=8, active=2, processed=1234,
               last_heartbeat_at=utcnow() - timedelta(seconds=5))  # fmt: skip
    add_worker(ctx, "w2@old", status="offline", last_heartbeat_at=utcnow() - timedelta(hours=3))


def send(client: TestClient, action: str, form: dict[str, str], host: str = HOST) -> Any:
    token = csrf_of(client.get("/workers").text)
    data = {**form, "csrf_token": token}
    return client.post(f"/workers/{host}/{action}", data=data, follow_redirects=False)


def audited(ctx: AppContext) -> list[str]:
    with ctx.session() as s:
        return list(s.scalars(select(AuditEntry.action).where(AuditEntry.object_type == "worker")))


@pytest.mark.parametrize("role", ROLES)
def test_workers_page_by_role(ctx: AppContext, console: Console, role: Role | None) -> None:
    seed(ctx)
    response = console(role).get("/workers", follow_redirects=False)
    if role is None:
        assert response.status_code == 303
        assert response.headers["location"] == "/login?next=/workers"
        return
    page = response.text
    assert response.status_code == 200
    assert "1 online of 2" in page
    assert page.index("w1@prod") < page.index("w2@old")  # online first
    age = re.search(r"([0-9.]+) s ago", page)
    assert age is not None
    assert 5 <= float(age.group(1)) < 60
    assert "3 h 00 m ago" in page
    assert "1234" in page
    assert "&lt;i&gt;q" in page
    assert "<i>q" not in page
    can_operate = role in (Role.ADMIN, Role.OPERATOR)
    assert ("/workers/w1%40prod/pool/grow" in page) is can_operate
    assert ("/workers/w1%40prod/consumers/add" in page) is can_operate
    assert ("/workers/w1%40prod/shutdown" in page) is (role == Role.ADMIN)


@pytest.mark.parametrize(("action", "form"), ACTIONS)
def test_viewer_is_refused_whatever_it_posts(
    ctx: AppContext, console: Console, action: str, form: dict[str, str]
) -> None:
    seed(ctx)
    response = send(console(Role.VIEWER), action, form)
    assert response.status_code == 403
    assert audited(ctx) == []


def test_operator_cannot_shut_down(ctx: AppContext, console: Console) -> None:
    seed(ctx)
    client = console(Role.OPERATOR)
    assert client.get(f"/workers/{HOST}/shutdown").status_code == 403
    assert send(client, "shutdown", {}).status_code == 403


def test_a_post_without_the_token_is_refused(ctx: AppContext, console: Console) -> None:
    seed(ctx)
    client = console(Role.ADMIN)
    client.get("/workers")
    response = client.post(f"/workers/{HOST}/pool/grow", data={"n": "1"})
    assert response.status_code == 403
    assert "Form expired or forged" in response.text


@pytest.mark.parametrize(("action", "form"), ACTIONS)
def test_a_worker_that_does_not_answer_is_a_message(
    ctx: AppContext, console: Console, action: str, form: dict[str, str]
) -> None:
    seed(ctx)
    client = console(Role.ADMIN)
    response = send(client, action, form)
    assert response.status_code == 303
    assert response.headers["location"] == "/workers"
    page = client.get("/workers").text
    assert 'class="flash flash-error"' in page
    assert "did not reply within 1 s" in page
    assert audited(ctx) == []  # nothing happened, nothing recorded


@pytest.mark.parametrize(
    ("action", "form", "message"),
    [
        ("pool/grow", {"n": "0"}, "must be a whole number from 1 to 1000"),
        ("pool/shrink", {"n": "many"}, "must be a whole number from 1 to 1000"),
        ("consumers/add", {"queue": "bad queue!"}, "queue: "),
    ],
)
def test_bad_input_is_a_message_next_to_nothing_sent(
    ctx: AppContext, console: Console, action: str, form: dict[str, str], message: str
) -> None:
    seed(ctx)
    client = console(Role.OPERATOR)
    assert send(client, action, form).status_code == 303
    page = client.get("/workers").text
    assert 'class="flash flash-error"' in page
    assert message in page


def test_unknown_worker_is_a_message(ctx: AppContext, console: Console) -> None:
    client = console(Role.OPERATOR)
    assert send(client, "pool/grow", {"n": "1"}, host="ghost@nowhere").status_code == 303
    assert "no worker named &#39;ghost@nowhere&#39; has been seen" in client.get("/workers").text


def test_shutdown_asks_first(ctx: AppContext, console: Console) -> None:
    seed(ctx)
    page = console(Role.ADMIN).get(f"/workers/{HOST}/shutdown")
    assert page.status_code == 200
    assert "Shut down worker w1@prod?" in page.text
    assert 'action="/workers/w1%40prod/shutdown"' in page.text
    assert 'name="csrf_token"' in page.text


def test_workers_page_in_chinese(ctx: AppContext, console: Console) -> None:
    seed(ctx)
    page = console(Role.ADMIN).get("/workers", headers={"Accept-Language": "zh-CN"}).text
    assert "扩大进程池" in page
    assert "在线" in page


@pytest.mark.celery
def test_a_live_worker_is_resized_rerouted_and_shut_down_from_the_page(
    ctx: AppContext,
    console: Console,
    redis_url: str,
    data_dir: Path,
    worker_pool: WorkerPool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(console_workers, "CONTROL_TIMEOUT", 10.0)  # a loaded machine is slow
    env = {"MAINSPRING_DATA_DIR": str(data_dir), "MAINSPRING_BROKER_URL": redis_url}
    host = worker_pool.start(env, "-P", "prefork", "-c", "1", "-Q", "default")
    register(ctx, host)
    operator, admin = console(Role.OPERATOR), console(Role.ADMIN)
    for action, form in ACTIONS[:4]:
        assert send(operator, action, form, host=host).status_code == 303
        page = operator.get("/workers").text
        assert 'class="flash flash-error"' not in page, page
        assert f"{host} answered:" in page
    assert send(admin, "shutdown", {}, host=host).status_code == 303
    assert "shutdown requested" in admin.get("/workers").text
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
