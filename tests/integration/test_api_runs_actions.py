"""Revoke, terminate and re-run through ``/api/v1/runs`` on a real Redis (stored revocations,
published re-runs), and the list filters added with them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import select

from mainspring.context import AppContext
from mainspring.core.states import Role, RunState
from mainspring.db.models import AuditEntry, Run
from mainspring.settings import Settings
from mainspring.worker.guard import REVOKED_KEY

pytestmark = [pytest.mark.redis]

Auth = dict[Role | None, dict[str, str]]
BASE = datetime(2025, 3, 1, 4, 0, tzinfo=UTC)
ROLES: list[Role | None] = [Role.ADMIN, Role.OPERATOR, Role.VIEWER, None]
QUEUE = f"test-{uuid.uuid4().hex[:8]}"  # consumed by no other test's worker


@pytest.fixture
def settings(data_dir: Any, redis_url: str) -> Settings:
    return Settings(data_dir=data_dir, secret_key="k", broker_url=redis_url)


@pytest.fixture
def client(celery_client: TestClient) -> TestClient:
    return celery_client


@pytest.fixture
def broker(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def add_run(ctx: AppContext, run_id: str, state: RunState, **values: Any) -> None:
    at = values.pop("created_at", BASE)
    row = {
        "task": "mainspring.echo",
        "args": [],
        "kwargs": {"message": "again"},
        "options": {},
        "queue": QUEUE,
        "attempt": 0,
        "trigger": "api",
        "created_at": at,
        "updated_at": at,
        "log_bytes": 0,
        "log_truncated": False,
        **values,
    }
    if state is RunState.SCHEDULED:
        row.setdefault("scheduled_for", at + timedelta(hours=1))
    with ctx.session() as s:
        s.add(Run(id=run_id, state=state.value, **row))


def stored(ctx: AppContext, run_id: str) -> Run:
    with ctx.session() as s:
        run = s.get(Run, run_id)
        assert run is not None
        return run


def audit(ctx: AppContext, action: str) -> list[AuditEntry]:
    with ctx.session() as s:
        return list(s.scalars(select(AuditEntry).where(AuditEntry.action == action)))


# --- roles -----------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", ["revoke", "terminate", "rerun"])
def test_run_actions_need_the_operator_role(
    client: TestClient, auth: Auth, ctx: AppContext, role: Role | None, action: str
) -> None:
    add_run(ctx, "r1", RunState.SCHEDULED)
    response = client.post(f"/api/v1/runs/r1/{action}", headers=auth[role])
    expected = {Role.ADMIN: 202, Role.OPERATOR: 202, Role.VIEWER: 403, None: 401}[role]
    assert response.status_code == expected
    assert len(audit(ctx, action)) == (1 if expected == 202 else 0)


@pytest.mark.parametrize("action", ["revoke", "terminate", "rerun"])
def test_actions_on_an_unknown_run_are_404s(client: TestClient, auth: Auth, action: str) -> None:
    response = client.post(f"/api/v1/runs/nope/{action}", headers=auth[Role.OPERATOR])
    assert response.status_code == 404
    assert response.json() == {"detail": "no run with id 'nope'"}


# --- revoke / terminate ------------------------------------------------------------------------


def test_revoking_a_scheduled_run_withdraws_it_at_once(
    client: TestClient, auth: Auth, ctx: AppContext, broker: redis.Redis
) -> None:
    add_run(ctx, "later", RunState.SCHEDULED)
    response = client.post("/api/v1/runs/later/revoke", headers=auth[Role.OPERATOR])
    assert response.status_code == 202
    assert response.json()["state"] == "REVOKED"
    run = stored(ctx, "later")
    assert (run.state, run.reason) == ("REVOKED", "revoke by operator")
    assert broker.get(REVOKED_KEY.format(run_id="later")) == b"revoke"
    (entry,) = audit(ctx, "revoke")
    assert (entry.actor, entry.object_type, entry.object_id) == ("operator", "run", "later")
    assert entry.changes == {
        "v": 1,
        "before": {"state": "SCHEDULED"},
        "after": {"state": "REVOKED"},
    }


def test_revoking_a_sent_run_stores_the_revocation_for_every_worker(
    client: TestClient, auth: Auth, ctx: AppContext, broker: redis.Redis
) -> None:
    add_run(ctx, "queued", RunState.SENT)
    response = client.post("/api/v1/runs/queued/revoke", headers=auth[Role.ADMIN])
    assert response.status_code == 202
    assert response.json()["state"] == "SENT"  # the recorder moves it when a worker discards it
    assert "revocation stored" in response.json()["detail"]
    assert broker.get(REVOKED_KEY.format(run_id="queued")) == b"revoke"


@pytest.mark.parametrize(
    ("state", "words"), [(RunState.STARTED, "terminate it"), (RunState.SUCCESS, "already SUCCESS")]
)
def test_revoking_a_running_or_finished_run_is_a_conflict(
    client: TestClient, auth: Auth, ctx: AppContext, state: RunState, words: str
) -> None:
    add_run(ctx, "r", state)
    response = client.post("/api/v1/runs/r/revoke", headers=auth[Role.OPERATOR])
    assert response.status_code == 409
    assert words in response.json()["detail"]
    assert audit(ctx, "revoke") == []


def test_terminating_a_running_run_sends_the_signal_and_stores_it(
    client: TestClient, auth: Auth, ctx: AppContext, broker: redis.Redis
) -> None:
    add_run(ctx, "busy", RunState.STARTED, worker="w1@h")
    response = client.post(
        "/api/v1/runs/busy/terminate", json={"signal": "kill"}, headers=auth[Role.OPERATOR]
    )
    assert response.status_code == 202
    assert response.json()["detail"].startswith("SIGKILL sent")
    assert broker.get(REVOKED_KEY.format(run_id="busy")) == b"terminate"
    (entry,) = audit(ctx, "terminate")
    assert entry.changes is not None
    assert entry.changes["after"]["signal"] == "SIGKILL"


def test_an_unknown_signal_is_a_422_naming_signal(
    client: TestClient, auth: Auth, ctx: AppContext
) -> None:
    add_run(ctx, "busy", RunState.STARTED)
    response = client.post(
        "/api/v1/runs/busy/terminate", json={"signal": "SIGWHATEVER"}, headers=auth[Role.OPERATOR]
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "signal"]


def test_revoking_a_broadcast_revokes_its_unfinished_copies(
    client: TestClient, auth: Auth, ctx: AppContext, broker: redis.Redis
) -> None:
    add_run(ctx, "parent", RunState.SENT, options={"broadcast": True, "targets": 2})
    add_run(ctx, "copy-a", RunState.SENT, parent_id="parent", queue="host.a@h")
    add_run(ctx, "copy-b", RunState.SKIPPED, parent_id="parent", queue="host.b@h")
    response = client.post("/api/v1/runs/parent/revoke", headers=auth[Role.OPERATOR])
    assert response.json()["children"] == 1
    assert broker.get(REVOKED_KEY.format(run_id="copy-a")) == b"revoke"
    assert broker.get(REVOKED_KEY.format(run_id="copy-b")) is None


# --- rerun ---------------------------------------------------------------------------------


def test_a_rerun_is_a_new_run_that_names_the_old_one(
    client: TestClient, auth: Auth, ctx: AppContext, broker: redis.Redis
) -> None:
    add_run(ctx, "old", RunState.FAILURE, options={"priority": 3, "submitted_by": "x"})
    response = client.post("/api/v1/runs/old/rerun", headers=auth[Role.OPERATOR])
    assert response.status_code == 202
    new_id = response.json()["id"]
    assert new_id != "old"
    new = stored(ctx, new_id)
    assert (new.task, new.kwargs, new.reason) == (
        "mainspring.echo",
        {"message": "again"},
        "rerun of old",
    )
    assert (new.trigger, new.options["priority"], new.options["submitted_by"]) == (
        "manual",
        3,
        "operator",
    )
    # priority 3 is kombu's Redis sub-queue for step 6 (Redis serves low numbers first)
    assert broker.llen(f"{QUEUE}\x06\x166") == 1
    detail = client.get(f"/api/v1/runs/{new_id}", headers=auth[Role.VIEWER]).json()
    assert detail["reason"] == "rerun of old"
    (entry,) = audit(ctx, "rerun")
    assert entry.changes is not None
    assert entry.changes["after"]["run"] == new_id


def test_a_rerun_takes_edited_arguments(client: TestClient, auth: Auth, ctx: AppContext) -> None:
    add_run(ctx, "old", RunState.SUCCESS)
    body = {"kwargs": {"message": "edited"}, "options": {"queue": "other"}}
    response = client.post("/api/v1/runs/old/rerun", json=body, headers=auth[Role.OPERATOR])
    new = stored(ctx, response.json()["id"])
    assert (new.kwargs, new.queue) == ({"message": "edited"}, "other")


def test_a_rerun_of_a_worker_targeted_run_goes_to_that_worker(
    client: TestClient, auth: Auth, ctx: AppContext
) -> None:
    add_run(ctx, "old", RunState.SUCCESS, queue="host.w1@db-01")
    response = client.post("/api/v1/runs/old/rerun", headers=auth[Role.OPERATOR])
    assert response.json()["queue"] == "host.w1@db-01"


def test_a_rerun_refuses_arguments_whose_secrets_were_masked(
    client: TestClient, auth: Auth, ctx: AppContext
) -> None:
    add_run(
        ctx, "old", RunState.SUCCESS, task="tests.login", kwargs={"user": "u", "password": "***"}
    )
    response = client.post("/api/v1/runs/old/rerun", headers=auth[Role.OPERATOR])
    assert response.status_code == 422
    assert response.json()["detail"]["field"] == "kwargs"
    body = {"kwargs": {"user": "u", "password": "s3cret"}}
    again = client.post("/api/v1/runs/old/rerun", json=body, headers=auth[Role.OPERATOR])
    assert again.status_code == 202


# --- filters and detail ----------------------------------------------------------------------


def _ids(client: TestClient, auth: Auth, **params: Any) -> list[str]:
    response = client.get("/api/v1/runs", params=params, headers=auth[Role.VIEWER])
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def test_runs_filter_by_trigger_time_range_and_parent(
    client: TestClient, auth: Auth, ctx: AppContext
) -> None:
    for i, trigger in enumerate(["schedule", "api", "manual", "api"]):
        add_run(
            ctx, f"r{i}", RunState.SUCCESS, trigger=trigger, created_at=BASE + timedelta(hours=i)
        )
    add_run(ctx, "child", RunState.SENT, parent_id="r1", created_at=BASE)
    assert _ids(client, auth, trigger="API") == ["r3", "r1", "child"]
    after, before = BASE + timedelta(hours=1), BASE + timedelta(hours=3)
    window = {"created_after": after.isoformat(), "created_before": before.isoformat()}
    assert _ids(client, auth, **window) == ["r2", "r1"]
    assert _ids(client, auth, parent_id="r1") == ["child"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"trigger": "cron"}, "trigger"),
        ({"created_after": "2025-03-01T00:00:00"}, "created_after"),
        (
            {"created_after": "2025-03-02T00:00:00Z", "created_before": "2025-03-01T00:00:00Z"},
            "created_before",
        ),
    ],
)
def test_bad_run_filters_are_422s_naming_the_field(
    client: TestClient, auth: Auth, params: dict[str, str], field: str
) -> None:
    response = client.get("/api/v1/runs", params=params, headers=auth[Role.VIEWER])
    assert response.status_code == 422
    assert response.json()["detail"]["field"] == field
