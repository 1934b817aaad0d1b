"""Revoke, terminate and re-run from the console's run page, on a real Redis broker: the
same service calls as ``/api/v1/runs``, audited with the console user, refused to viewers."""

from __future__ import annotations

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
from mainspring.core.states import Role, RunState
from mainspring.db.models import Run
from mainspring.settings import Settings
from mainspring.worker.app import make_celery
from mainspring.worker.guard import REVOKED_KEY
from tests.integration.test_api_runs_actions import add_run, audit, stored
from tests.integration.test_console_jobs import ROLES, Console, csrf_of, login

pytestmark = [pytest.mark.redis]


@pytest.fixture
def settings(data_dir: Any, redis_url: str) -> Settings:
    return Settings(data_dir=data_dir, secret_key="k", broker_url=redis_url)


@pytest.fixture
def broker(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


@pytest.fixture
def console(ctx: AppContext, tokens: dict[Role, str], settings: Settings) -> Iterator[Console]:
    """Browsers per role on an app whose Celery app publishes to the test's Redis."""
    celery: Celery = make_celery(settings)
    with ExitStack() as stack:
        stack.callback(celery.close)

        def open_as(role: Role | None) -> TestClient:
            web = create_app(ctx)
            web.state.celery = celery
            client = stack.enter_context(TestClient(web))
            if role is not None:
                login(client, role.value)
            return client

        yield open_as


def act(client: TestClient, run_id: str, action: str, **form: str) -> Any:
    token = csrf_of(client.get(f"/runs/{run_id}").text)
    data = {**form, "csrf_token": token}
    return client.post(f"/runs/{run_id}/{action}", data=data, follow_redirects=False)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", ["revoke", "terminate", "rerun"])
def test_run_actions_need_the_operator_role(
    ctx: AppContext, console: Console, broker: redis.Redis, role: Role | None, action: str
) -> None:
    add_run(ctx, "r1", RunState.SENT)
    client = console(role)
    if role is None:
        response = client.post(f"/runs/r1/{action}", follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login")
    else:
        response = act(client, "r1", action)
        assert response.status_code == (403 if role is Role.VIEWER else 303)
    allowed = role in (Role.ADMIN, Role.OPERATOR)
    assert len(audit(ctx, action)) == (1 if allowed else 0)
    assert (broker.get(REVOKED_KEY.format(run_id="r1")) is not None) == (
        allowed and action != "rerun"
    )


@pytest.mark.parametrize("action", ["revoke", "terminate", "rerun"])
def test_run_actions_without_the_session_token_are_refused(
    ctx: AppContext, console: Console, action: str
) -> None:
    add_run(ctx, "r1", RunState.SENT)
    response = console(Role.OPERATOR).post(f"/runs/r1/{action}", data={"csrf_token": "forged"})
    assert response.status_code == 403
    assert audit(ctx, action) == []


def test_revoking_a_scheduled_run_withdraws_it(ctx: AppContext, console: Console) -> None:
    add_run(ctx, "later", RunState.SCHEDULED)
    client = console(Role.OPERATOR)
    response = act(client, "later", "revoke")
    assert response.headers["location"] == "/runs/later"
    assert (stored(ctx, "later").state, stored(ctx, "later").reason) == (
        "REVOKED",
        "revoke by operator",
    )
    page = client.get("/runs/later").text
    assert "Revoked: withdrawn before it was published" in page
    (entry,) = audit(ctx, "revoke")
    assert (entry.actor, entry.object_id) == ("operator", "later")


def test_revoking_a_finished_run_says_why_not(ctx: AppContext, console: Console) -> None:
    add_run(ctx, "done", RunState.SUCCESS)
    client = console(Role.OPERATOR)
    assert act(client, "done", "revoke").status_code == 303
    assert "already SUCCESS; there is nothing to revoke" in client.get("/runs/done").text
    assert audit(ctx, "revoke") == []


def test_terminating_sends_the_chosen_signal(
    ctx: AppContext, console: Console, broker: redis.Redis
) -> None:
    add_run(ctx, "busy", RunState.STARTED, worker="w1@h")
    client = console(Role.ADMIN)
    assert act(client, "busy", "terminate", signal="SIGKILL").status_code == 303
    assert broker.get(REVOKED_KEY.format(run_id="busy")) == b"terminate"
    (entry,) = audit(ctx, "terminate")
    assert entry.changes is not None
    assert entry.changes["after"]["signal"] == "SIGKILL"
    assert "SIGKILL sent to the worker running it" in client.get("/runs/busy").text
    assert act(client, "busy", "terminate", signal="SIGNOPE").status_code == 422


def test_rerun_with_edited_arguments_opens_the_new_run(ctx: AppContext, console: Console) -> None:
    add_run(ctx, "old", RunState.FAILURE)
    client = console(Role.OPERATOR)
    response = act(client, "old", "rerun", args="[]", kwargs='{"message": "edited"}')
    assert response.status_code == 303
    new_id = response.headers["location"].removeprefix("/runs/")
    new = stored(ctx, new_id)
    assert (new.task, new.kwargs, new.reason) == (
        "mainspring.echo",
        {"message": "edited"},
        "rerun of old",
    )
    assert "Run sent again as a new run." in client.get(response.headers["location"]).text
    (entry,) = audit(ctx, "rerun")
    assert entry.actor == "operator"


def test_rerun_with_bad_arguments_keeps_the_input(ctx: AppContext, console: Console) -> None:
    add_run(ctx, "old", RunState.FAILURE)
    response = act(console(Role.OPERATOR), "old", "rerun", args="[1,", kwargs='["not", "a dict"]')
    assert response.status_code == 422
    assert "is not valid JSON" in response.text
    assert "must be a JSON object" in response.text
    assert ">[1,</textarea>" in response.text
    with ctx.session() as s:
        assert s.scalars(select(Run.id)).all() == ["old"]
