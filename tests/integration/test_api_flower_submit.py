"""Submitting through the Flower API: bodies read whatever the content type, Flower's options,
errors that name the argument, results, revoke and abort. No worker: messages stay on Redis.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from mainspring.context import AppContext
from mainspring.core.states import Role, RunState, WorkerStatus
from mainspring.db.models import AuditEntry, Run, Worker
from mainspring.services.clock import utcnow
from mainspring.settings import Settings
from mainspring.worker.app import make_celery
from mainspring.worker.guard import run_store

pytestmark = [pytest.mark.redis]

Headers = dict[Role | None, dict[str, str]]


@pytest.fixture
def settings(data_dir: Path, redis_url: str) -> Settings:
    return Settings(
        data_dir=data_dir,
        secret_key="test-secret-key",
        timezone="Asia/Shanghai",
        broker_url=redis_url,
    )


@pytest.fixture
def op(auth: Headers) -> dict[str, str]:
    return auth[Role.OPERATOR]


def _run(ctx: AppContext, run_id: str) -> Run:
    with ctx.session() as session:
        run = session.get(Run, run_id)
        assert run is not None, f"no run {run_id}"
        session.expunge(run)
        return run


def _post(client: TestClient, path: str, body: bytes, headers: dict[str, str]) -> Any:
    return client.post(path, content=body, headers=headers)


# --- bodies ---------------------------------------------------------------------------------


def test_a_json_body_without_content_type_is_submitted_and_published(
    client: TestClient, ctx: AppContext, op: dict[str, str], redis_url: str
) -> None:
    """Seed 002: ``curl -X POST -d '{"args":[1,2]}'`` (curl says form-urlencoded)."""
    no_type = _post(client, "/api/task/async-apply/tasks.add", b'{"args":[1,2]}', op)
    as_form = client.post(
        "/api/task/async-apply/tasks.add",
        content=b'{"args":[3,4]}',
        headers={**op, "Content-Type": "application/x-www-form-urlencoded"},
    )

    assert no_type.status_code == 200, no_type.text
    assert as_form.status_code == 200, as_form.text
    assert set(no_type.json()) == {"task-id", "state"}
    assert no_type.json()["state"] == "PENDING"
    first, second = _run(ctx, no_type.json()["task-id"]), _run(ctx, as_form.json()["task-id"])
    assert (first.task, first.args, first.kwargs, first.state) == ("tasks.add", [1, 2], {}, "SENT")
    assert second.args == [3, 4]
    assert redis.Redis.from_url(redis_url).llen("default") == 2


def test_seed000_malformed_content_type_header_does_not_matter(
    client: TestClient, ctx: AppContext, op: dict[str, str]
) -> None:
    """Seed 000 sends ``-H "'Content-type':'application/json'"``: a header named
    ``'Content-type'`` (quotes included) next to curl's own form content type."""
    answer = client.post(
        "/api/task/send-task/remote.tasks.http",
        content=b'{"args" :["www.test.com"]}',
        headers={
            **op,
            "'Content-type'": "'application/json'",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )

    assert answer.status_code == 200, answer.text
    assert _run(ctx, answer.json()["task-id"]).args == ["www.test.com"]


def test_an_empty_body_submits_without_arguments(
    client: TestClient, ctx: AppContext, op: dict[str, str]
) -> None:
    answer = client.post("/api/task/send-task/tasks.ping", headers=op)

    run = _run(ctx, answer.json()["task-id"])
    assert (run.args, run.kwargs) == ([], {})


def test_kwargs_and_flower_options_reach_the_run(
    client: TestClient, ctx: AppContext, op: dict[str, str], redis_url: str
) -> None:
    body = (
        b'{"kwargs": {"x": 1}, "queue": "reports", "priority": 7, "expires": 120,'
        b' "time_limit": 30, "soft_time_limit": 20}'
    )
    answer = _post(client, "/api/task/async-apply/tasks.add", body, op)

    run = _run(ctx, answer.json()["task-id"])
    assert (run.kwargs, run.queue) == ({"x": 1}, "reports")
    assert run.options["priority"] == 7
    assert run.options["expires"] == pytest.approx(120, abs=1)
    assert (run.options["time_limit"], run.options["soft_time_limit"]) == (30, 20)
    assert redis.Redis.from_url(redis_url).exists("reports", "reports\x06\x169")


def test_routing_key_names_the_queue_and_options_may_be_nested(
    client: TestClient, ctx: AppContext, op: dict[str, str]
) -> None:
    keyed = _post(client, "/api/task/async-apply/tasks.add", b'{"routing_key": "fast"}', op)
    nested = _post(client, "/api/task/async-apply/tasks.add", b'{"options": {"queue": "slow"}}', op)

    assert _run(ctx, keyed.json()["task-id"]).queue == "fast"
    assert _run(ctx, nested.json()["task-id"]).queue == "slow"


def test_countdown_holds_the_run_for_the_scheduler(
    client: TestClient, ctx: AppContext, op: dict[str, str], redis_url: str
) -> None:
    before = utcnow()
    answer = _post(
        client, "/api/task/apply/tasks.add?timeout=0", b'{"args":[1,2], "countdown": 60}', op
    )
    async_answer = _post(
        client, "/api/task/async-apply/tasks.add", b'{"countdown": "30", "priority": 2}', op
    )

    assert answer.json()["state"] == "PENDING"
    held = _run(ctx, answer.json()["task-id"])
    assert held.state == RunState.SCHEDULED.value
    assert held.scheduled_for is not None
    assert timedelta(seconds=59) < held.scheduled_for - before < timedelta(seconds=62)
    assert _run(ctx, async_answer.json()["task-id"]).options["priority"] == 2
    assert redis.Redis.from_url(redis_url).llen("default") == 0  # nothing published yet


def test_a_naive_eta_is_read_in_the_configured_time_zone(
    client: TestClient, ctx: AppContext, op: dict[str, str]
) -> None:
    """Flower's ``%Y-%m-%d %H:%M:%S.%f``; the settings say Asia/Shanghai (UTC+8)."""
    local = (utcnow() + timedelta(hours=8, minutes=10)).replace(tzinfo=None)
    eta = local.strftime("%Y-%m-%d %H:%M:%S.%f")
    answer = _post(client, "/api/task/async-apply/tasks.add", f'{{"eta": "{eta}"}}'.encode(), op)

    held = _run(ctx, answer.json()["task-id"])
    assert held.scheduled_for == local.replace(tzinfo=UTC) - timedelta(hours=8)


def test_an_eta_in_the_past_runs_now(
    client: TestClient, ctx: AppContext, op: dict[str, str]
) -> None:
    answer = _post(
        client, "/api/task/async-apply/tasks.add", b'{"eta": "2020-01-01T00:00:00+00:00"}', op
    )

    assert _run(ctx, answer.json()["task-id"]).state == RunState.SENT.value


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"args": 1}', "args"),
        (b'{"args": {"a": 1}}', "args"),
        (b'{"kwargs": [1]}', "kwargs"),
        (b"{not json", "body"),
        (b"[1, 2]", "body"),
        (b"\xff\xfe\x00", "body"),
        (b"[" * 100_000, "body"),
        (b'{"args": [NaN]}', "body"),
        (b'{"foo": 1}', "foo"),
        (b'{"\\ud800 x": 1}', "options"),
        (b'{"task_id": "mine"}', "task_id"),
        (b'{"options": 3}', "options"),
        (b'{"countdown": 1, "eta": "2030-01-01 00:00"}', "countdown"),
        (b'{"countdown": -5}', "countdown"),
        (b'{"countdown": "soon"}', "countdown"),
        (b'{"countdown": 1e300}', "countdown"),
        (b'{"eta": "tomorrow"}', "eta"),
        (b'{"eta": 5}', "eta"),
        (b'{"eta": "9999-12-31T23:59:59-14:00"}', "eta"),
        (b'{"expires": "2000-01-01 00:00:00"}', "expires"),
        (b'{"expires": -1}', "expires"),
        (b'{"priority": 10}', "priority"),
        (b'{"priority": "high"}', "priority"),
        (b'{"time_limit": 0}', "time_limit"),
        (b'{"queue": "bad queue!"}', "queue"),
        (b'{"queue": "a", "worker": "w@h"}', "worker"),
    ],
)
def test_a_bad_submission_is_a_400_naming_the_argument(
    client: TestClient, ctx: AppContext, op: dict[str, str], body: bytes, field: str
) -> None:
    answer = _post(client, "/api/task/async-apply/tasks.add", body, op)

    assert answer.status_code == 400, answer.text
    assert answer.json()["detail"]["field"] == field
    assert answer.json()["detail"]["message"]
    with ctx.session() as session:
        assert session.query(Run).count() == 0


def test_a_task_no_worker_registered_is_flowers_404(
    client: TestClient, ctx: AppContext, op: dict[str, str]
) -> None:
    now = utcnow()
    with ctx.session() as session:
        session.add(
            Worker(
                hostname="w1@h",
                status=WorkerStatus.ONLINE.value,
                queues=["default"],
                registered_tasks=["tasks.add"],
                first_seen_at=now,
                updated_at=now,
            )
        )

    unknown = _post(client, "/api/task/async-apply/tasks.nope", b"{}", op)
    by_name = _post(client, "/api/task/send-task/tasks.nope", b"{}", op)
    invalid = _post(client, "/api/task/send-task/-bad", b"{}", op)
    known = _post(client, "/api/task/async-apply/tasks.add", b'{"args": [1, 1]}', op)

    assert (unknown.status_code, unknown.json()) == (404, {"detail": "Unknown task 'tasks.nope'"})
    assert by_name.status_code == 404
    assert invalid.status_code == 404
    assert known.status_code == 200


# --- results --------------------------------------------------------------------------------


def _finished(ctx: AppContext, run_id: str, state: RunState, **values: Any) -> None:
    now = utcnow()
    with ctx.session() as session:
        session.add(
            Run(
                id=run_id,
                task="tasks.add",
                args=[1, 2],
                kwargs={},
                options={},
                queue="default",
                state=state.value,
                attempt=0,
                trigger="api",
                created_at=now,
                sent_at=now,
                finished_at=now,
                updated_at=now,
                log_bytes=0,
                log_truncated=False,
                **values,
            )
        )


def test_result_of_an_unknown_id_is_pending_as_in_celery(client: TestClient, auth: Headers) -> None:
    answer = client.get("/api/task/result/no-such-task", headers=auth[Role.VIEWER])

    assert answer.json() == {"task-id": "no-such-task", "state": "PENDING"}


def test_result_of_a_finished_run_comes_from_its_row(
    client: TestClient, ctx: AppContext, auth: Headers
) -> None:
    _finished(ctx, "ok-1", RunState.SUCCESS, result={"sum": 3})
    _finished(
        ctx,
        "bad-1",
        RunState.FAILURE,
        exception_type="ValueError",
        exception_message="boom",
        traceback="Traceback ...\nValueError: boom",
    )
    _finished(ctx, "gone-1", RunState.LOST, exception_type="WorkerLostError")

    ok = client.get("/api/task/result/ok-1", headers=auth[Role.VIEWER]).json()
    bad = client.get("/api/task/result/bad-1", headers=auth[Role.VIEWER]).json()
    gone = client.get("/api/task/result/gone-1", headers=auth[Role.VIEWER]).json()

    assert ok == {"task-id": "ok-1", "state": "SUCCESS", "result": {"sum": 3}}
    assert bad == {
        "task-id": "bad-1",
        "state": "FAILURE",
        "result": "ValueError('boom')",
        "traceback": "Traceback ...\nValueError: boom",
    }
    assert (gone["state"], gone["result"]) == ("FAILURE", "WorkerLostError")


def test_waiting_for_a_result_gives_up_after_the_timeout(client: TestClient, auth: Headers) -> None:
    sent = _post(client, "/api/task/async-apply/tasks.add", b"{}", auth[Role.OPERATOR]).json()

    answer = client.get(
        f"/api/task/result/{sent['task-id']}?timeout=0.3", headers=auth[Role.VIEWER]
    )

    assert answer.status_code == 200
    assert answer.json() == {"task-id": sent["task-id"], "state": "PENDING"}


@pytest.mark.parametrize("timeout", ["soon", "-1", "99999", "nan"])
def test_a_bad_result_timeout_is_a_400(client: TestClient, auth: Headers, timeout: str) -> None:
    answer = client.get(f"/api/task/result/x?timeout={timeout}", headers=auth[Role.VIEWER])

    assert answer.status_code == 400
    assert answer.json()["detail"]["field"] == "timeout"


# --- revoke and abort -----------------------------------------------------------------------


def test_revoking_a_held_run_withdraws_it_and_is_audited(
    client: TestClient, ctx: AppContext, op: dict[str, str]
) -> None:
    held = _post(client, "/api/task/async-apply/tasks.add", b'{"countdown": 600}', op).json()

    answer = client.post(f"/api/task/revoke/{held['task-id']}", headers=op)

    assert answer.json() == {"message": f"Revoked '{held['task-id']}'"}
    assert _run(ctx, held["task-id"]).state == RunState.REVOKED.value
    with ctx.session() as session:
        entry = session.query(AuditEntry).filter_by(object_id=held["task-id"]).one()
        assert (entry.actor, entry.action) == ("operator", "revoke")


def test_revoke_reads_terminate_and_signal_from_an_urlencoded_body(
    client: TestClient, op: dict[str, str], settings: Settings
) -> None:
    answer = client.post(
        "/api/task/revoke/not-yet-seen",
        content=b"terminate=true&signal=KILL",
        headers={**op, "Content-Type": "application/x-www-form-urlencoded"},
    )

    assert answer.json() == {"message": "Revoked 'not-yet-seen'"}
    # Stored where a worker looks before it runs anything (the run guard).
    app = make_celery(settings)
    try:
        assert run_store(app).terminate_requested("not-yet-seen")
    finally:
        app.close()


@pytest.mark.parametrize(
    ("query", "field"),
    [("terminate=maybe", "terminate"), ("terminate=1&signal=SIGNOPE", "signal")],
)
def test_a_bad_revoke_argument_is_a_400(
    client: TestClient, op: dict[str, str], query: str, field: str
) -> None:
    answer = client.post(f"/api/task/revoke/x?{query}", headers=op)

    assert answer.status_code == 400
    assert answer.json()["detail"]["field"] == field


def test_abort_marks_the_task_aborted_for_abortable_tasks(
    client: TestClient, ctx: AppContext, op: dict[str, str]
) -> None:
    sent = _post(client, "/api/task/async-apply/tasks.add", b"{}", op).json()

    answer = client.post(f"/api/task/abort/{sent['task-id']}", headers=op)
    result = client.get(f"/api/task/result/{sent['task-id']}", headers=op)

    assert answer.json() == {"message": f"Aborted '{sent['task-id']}'"}
    assert result.json()["state"] == "ABORTED"


def test_abort_refuses_a_run_that_already_ended(
    client: TestClient, ctx: AppContext, op: dict[str, str]
) -> None:
    _finished(ctx, "done-1", RunState.SUCCESS, result=3)

    answer = client.post("/api/task/abort/done-1", headers=op)

    assert answer.status_code == 409
    assert "already ended" in answer.json()["detail"]
    assert client.get("/api/task/result/done-1", headers=op).json()["result"] == 3


def test_no_broker_configured_is_a_503(ctx: AppContext, auth: Headers, data_dir: Path) -> None:
    from mainspring.api.app import create_app

    bare = AppContext.open(Settings(data_dir=data_dir, secret_key="test-secret-key"))
    try:
        with TestClient(create_app(bare)) as client:
            answer = client.post(
                "/api/task/async-apply/tasks.add", content=b"{}", headers=auth[Role.OPERATOR]
            )
    finally:
        bare.close()

    assert answer.status_code == 503
    assert "MAINSPRING_BROKER_URL" in answer.json()["detail"]


def test_times_are_parsed_against_an_aware_clock() -> None:
    """``parse_call`` compares ETAs with an aware ``now``; a naive one is a bug."""
    from zoneinfo import ZoneInfo

    from mainspring.api.flower.body import parse_call

    now = datetime(2026, 1, 1, tzinfo=UTC)
    call = parse_call({"eta": "2026-01-01 09:00:00"}, ZoneInfo("Asia/Shanghai"), now)

    assert call.due == datetime(2026, 1, 1, 1, 0, tzinfo=UTC)
