"""The console's queues page on a real Redis broker: lengths for every role, and purging a
queue (admins only) after typing its name, audited; a broker that is down is a message."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
import redis
from celery import Celery
from fastapi.testclient import TestClient
from sqlalchemy import select

from mainspring.api.app import create_app
from mainspring.context import AppContext
from mainspring.core.states import Role
from mainspring.db.models import AuditEntry
from mainspring.settings import Settings
from mainspring.worker.app import make_celery
from tests.integration.test_console_dashboard import add_worker
from tests.integration.test_console_jobs import ROLES, Console, csrf_of, login

pytestmark = [pytest.mark.redis]

QUEUE = "default-console-queues"
FULL = "full-console-queues"


@pytest.fixture
def settings(data_dir: Any, redis_url: str) -> Settings:
    return Settings(
        data_dir=data_dir,
        secret_key="k",
        broker_url=redis_url,
        default_queue=QUEUE,
        worker_queues=[QUEUE, FULL],
    )


@pytest.fixture
def broker(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.delete(QUEUE, FULL)
    client.rpush(FULL, *[f"message {i}" for i in range(3)])
    yield client
    client.delete(QUEUE, FULL)


def console_on(ctx: AppContext, settings: Settings, stack: ExitStack) -> Console:
    celery: Celery = make_celery(settings)
    stack.callback(celery.close)

    def open_as(role: Role | None) -> TestClient:
        web = create_app(ctx)
        web.state.celery = celery
        client = stack.enter_context(TestClient(web))
        if role is not None:
            login(client, role.value)
        return client

    return open_as


@pytest.fixture
def console(
    ctx: AppContext, tokens: dict[Role, str], settings: Settings, broker: redis.Redis
) -> Iterator[Console]:
    with ExitStack() as stack:
        yield console_on(ctx, settings, stack)


def purge(client: TestClient, name: str, typed: str) -> Any:
    token = csrf_of(client.get("/queues").text)
    data = {"confirm": typed, "csrf_token": token}
    return client.post(f"/queues/{name}/purge", data=data, follow_redirects=False)


def purges(ctx: AppContext) -> list[tuple[str, str | None]]:
    with ctx.session() as s:
        rows = s.scalars(select(AuditEntry).where(AuditEntry.object_type == "queue"))
        return [(e.actor, e.object_id) for e in rows]


@pytest.mark.parametrize("role", ROLES)
def test_queues_page_by_role(ctx: AppContext, console: Console, role: Role | None) -> None:
    add_worker(ctx, "w1@prod", queues=[FULL])
    response = console(role).get("/queues", follow_redirects=False)
    if role is None:
        assert response.status_code == 303
        assert response.headers["location"] == "/login?next=/queues"
        return
    assert response.status_code == 200
    page = response.text
    row = page[page.index(f"<code>{FULL}</code>") :]
    assert '<td class="num">3</td>' in row[: row.index("</tr>")]
    assert "w1@prod" in row[: row.index("</tr>")]
    assert (f'href="/queues/{FULL}/purge"' in page) is (role == Role.ADMIN)


@pytest.mark.parametrize("role", [Role.OPERATOR, Role.VIEWER])
def test_only_admins_purge(
    ctx: AppContext, console: Console, broker: redis.Redis, role: Role
) -> None:
    client = console(role)
    assert client.get(f"/queues/{FULL}/purge").status_code == 403
    assert purge(client, FULL, FULL).status_code == 403
    assert broker.llen(FULL) == 3
    assert purges(ctx) == []


def test_purge_needs_the_name_typed(ctx: AppContext, console: Console, broker: redis.Redis) -> None:
    client = console(Role.ADMIN)
    confirm = client.get(f"/queues/{FULL}/purge")
    assert confirm.status_code == 200
    assert f"Type {FULL} to confirm" in confirm.text
    wrong = purge(client, FULL, "full")
    assert wrong.status_code == 422
    assert "Type the queue&#39;s name exactly to confirm the purge." in wrong.text
    assert 'value="full"' in wrong.text  # the input is kept
    assert broker.llen(FULL) == 3


def test_purge_deletes_the_messages_and_is_audited(
    ctx: AppContext, console: Console, broker: redis.Redis
) -> None:
    client = console(Role.ADMIN)
    response = purge(client, FULL, FULL)
    assert response.status_code == 303
    assert response.headers["location"] == "/queues"
    assert broker.llen(FULL) == 0
    assert f"Purged 3 messages from {FULL}." in client.get("/queues").text
    assert purges(ctx) == [("admin", FULL)]


def test_purge_without_the_token_is_refused(console: Console, broker: redis.Redis) -> None:
    client = console(Role.ADMIN)
    client.get("/queues")
    response = client.post(f"/queues/{FULL}/purge", data={"confirm": FULL})
    assert response.status_code == 403
    assert broker.llen(FULL) == 3


def test_bad_queue_name_is_refused(console: Console) -> None:
    response = console(Role.ADMIN).get("/queues/bad%20name!/purge")
    assert response.status_code == 422


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_broker_down_is_a_message(ctx: AppContext, tokens: dict[Role, str], data_dir: Any) -> None:
    url = f"redis://127.0.0.1:{closed_port()}/0"
    down = Settings(data_dir=data_dir, secret_key="k", broker_url=url)
    with ExitStack() as stack:
        response = console_on(ctx, down, stack)(Role.VIEWER).get("/queues")
    assert response.status_code == 503
    assert "The broker cannot be reached" in response.text
    assert f"<code>{QUEUE}</code>" in response.text  # the names are still shown


def test_queues_page_in_chinese(console: Console) -> None:
    page = console(Role.ADMIN).get("/queues", headers={"Accept-Language": "zh-CN"}).text
    assert "<h1>队列" in page
    assert "清空" in page
