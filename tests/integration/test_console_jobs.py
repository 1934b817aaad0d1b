"""The console's job pages as each role sees them: list, detail, the job form, and the
operator's actions (pause, resume, run now, delete, bulk), all through real HTTP forms."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from mainspring.api.app import create_app
from mainspring.context import AppContext
from mainspring.core.states import Role
from mainspring.db.models import AuditEntry, Job, Run
from mainspring.services.jobs import JobSpec, create_job
from tests.integration.conftest import PASSWORD

ROLES: list[Role | None] = [Role.ADMIN, Role.OPERATOR, Role.VIEWER, None]
OPERATORS = [Role.ADMIN, Role.OPERATOR]
XSS = "<script>alert(1)</script>"
Console = Callable[[Role | None], TestClient]


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match is not None, "page has no CSRF field"
    return match.group(1)


def login(client: TestClient, username: str) -> None:
    token = csrf_of(client.get("/login").text)
    form = {"username": username, "password": PASSWORD, "csrf_token": token}
    response = client.post("/login", data=form, follow_redirects=False)
    assert response.status_code == 303, response.text


@pytest.fixture
def console(ctx: AppContext, tokens: dict[Role, str]) -> Iterator[Console]:
    """A browser per role: ``console(Role.VIEWER)`` is logged in as the viewer, ``None`` is
    anonymous."""
    with ExitStack() as stack:

        def open_as(role: Role | None) -> TestClient:
            client = stack.enter_context(TestClient(create_app(ctx)))
            if role is not None:
                login(client, role.value)
            return client

        yield open_as


def add_job(ctx: AppContext, name: str = "nightly backup", **values: Any) -> int:
    spec = {
        "task": "mainspring.shell",
        "trigger": {"kind": "cron", "expr": "0 2 * * *"},
        "timezone": "Asia/Shanghai",
        "kwargs": {"script": "echo hi"},
        **values,
    }
    with ctx.session() as s:
        return create_job(s, JobSpec(name=name, **spec)).id


def job_row(ctx: AppContext, job_id: int) -> Job | None:
    with ctx.session() as s:
        job = s.get(Job, job_id)
        if job is not None:
            s.expunge(job)
        return job


def audit_actions(ctx: AppContext, job_id: int) -> list[tuple[str, str]]:
    with ctx.session() as s:
        rows = s.scalars(
            select(AuditEntry)
            .where(AuditEntry.object_type == "job", AuditEntry.object_id == str(job_id))
            .order_by(AuditEntry.id)
        )
        return [(e.action, e.actor) for e in rows]


def post(client: TestClient, url: str, data: dict[str, Any], page: str | None = None) -> Any:
    """Submit a form the way a browser does: with the CSRF token of a page it showed."""
    token = csrf_of(client.get(page or "/jobs").text)
    return client.post(url, data={**data, "csrf_token": token}, follow_redirects=False)


def shell_form(**changes: str) -> dict[str, str]:
    """The job form as a browser posts it for a shell job every 2 s."""
    return {
        "name": "every two seconds",
        "description": "",
        "tags": "ops, demo",
        "enabled": "on",
        "trigger_kind": "interval",
        "every": "2",
        "every_unit": "s",
        "timezone": "Asia/Shanghai",
        "task_mode": "builtin",
        "builtin": "mainspring.shell",
        "param:mainspring.shell:script": "echo tick",
        "queue": "default",
        "misfire_policy": "run_once",
        "misfire_grace_s": "60",
        "overlap_policy": "skip",
        "jitter_ms": "0",
        "retries": "2",
        "backoff": "1.5",
        "retry_jitter": "on",
        "time_limit": "30",
        **changes,
    }


# --- who sees what ------------------------------------------------------------------------

READ_PAGES = ["/jobs", "/jobs/{id}"]
WRITE_PAGES = ["/jobs/new", "/jobs/new?clone={id}", "/jobs/{id}/edit", "/jobs/{id}/delete"]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("page", READ_PAGES + WRITE_PAGES)
def test_job_pages_by_role(ctx: AppContext, console: Console, role: Role | None, page: str) -> None:
    url = page.format(id=add_job(ctx))
    response = console(role).get(url, follow_redirects=False)
    if role is None:
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login?next=/jobs")
    elif role is Role.VIEWER and page in WRITE_PAGES:
        assert response.status_code == 403
        assert "operator role" in response.text
    else:
        assert response.status_code == 200
        assert ("New job" if page == "/jobs/new" else "nightly backup") in response.text


def test_viewer_sees_no_edit_or_run_controls(ctx: AppContext, console: Console) -> None:
    job_id = add_job(ctx)
    viewer, operator = console(Role.VIEWER), console(Role.OPERATOR)
    controls = [f"/jobs/{job_id}/edit", f"/jobs/{job_id}/pause", f"/jobs/{job_id}/run",
                f"/jobs/{job_id}/delete", f"/jobs/new?clone={job_id}"]  # fmt: skip
    detail_as_viewer = viewer.get(f"/jobs/{job_id}").text
    detail_as_operator = operator.get(f"/jobs/{job_id}").text
    for url in controls:
        assert url not in detail_as_viewer
        assert url in detail_as_operator
    assert 'href="/jobs/new"' not in viewer.get("/jobs").text
    assert 'name="job"' not in viewer.get("/jobs").text  # no bulk checkboxes
    assert 'name="job"' in operator.get("/jobs").text


WRITES = [
    ("/jobs/new", shell_form()),
    ("/jobs/{id}/edit", shell_form(version="1")),
    ("/jobs/{id}/pause", {}),
    ("/jobs/{id}/resume", {}),
    ("/jobs/{id}/run", {"args": "[]", "kwargs": "{}"}),
    ("/jobs/{id}/delete", {}),
    ("/jobs/bulk", {"action": "pause", "job": "{id}"}),
]


@pytest.mark.parametrize(("url", "form"), WRITES)
def test_viewer_posts_are_refused_even_with_a_valid_token(
    ctx: AppContext, console: Console, url: str, form: dict[str, str]
) -> None:
    job_id = add_job(ctx)
    data = {k: v.replace("{id}", str(job_id)) for k, v in form.items()}
    response = post(console(Role.VIEWER), url.format(id=job_id), data)
    assert response.status_code == 403
    job = job_row(ctx, job_id)
    assert job is not None
    assert job.enabled
    assert job.version == 1
    with ctx.session() as s:
        assert s.scalar(select(Run.id)) is None
        assert s.scalar(select(Job.id).where(Job.name == "every two seconds")) is None


@pytest.mark.parametrize(("url", "form"), WRITES)
def test_anonymous_posts_go_to_the_login_page(
    ctx: AppContext, console: Console, url: str, form: dict[str, str]
) -> None:
    job_id = add_job(ctx)
    response = console(None).post(url.format(id=job_id), data=form, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")
    assert audit_actions(ctx, job_id) == []


@pytest.mark.parametrize(("url", "form"), WRITES)
@pytest.mark.parametrize("token", [None, "forged-token"])
def test_operator_posts_without_the_session_token_are_refused(
    ctx: AppContext, console: Console, url: str, form: dict[str, str], token: str | None
) -> None:
    job_id = add_job(ctx)
    data = {k: v.replace("{id}", str(job_id)) for k, v in form.items()}
    if token:
        data["csrf_token"] = token
    response = console(Role.OPERATOR).post(url.format(id=job_id), data=data)
    assert response.status_code == 403
    assert "security token" in response.text
    assert audit_actions(ctx, job_id) == []


# --- the job form ---------------------------------------------------------------------------


def test_operator_creates_a_shell_job_through_the_form(ctx: AppContext, console: Console) -> None:
    client = console(Role.OPERATOR)
    response = post(client, "/jobs/new", shell_form(), page="/jobs/new")
    assert response.status_code == 303
    job_id = int(response.headers["location"].rsplit("/", 1)[1])
    job = job_row(ctx, job_id)
    assert job is not None
    assert (job.trigger["kind"], job.trigger["every_ms"]) == ("interval", 2000)
    assert job.task == "mainspring.shell"
    assert job.kwargs == {"script": "echo tick"}
    assert job.args == []
    assert job.tags == ["ops", "demo"]
    assert job.overlap_policy == "skip"
    assert job.options == {
        "retry": {"retries": 2, "backoff": 1.5, "backoff_max": 600.0, "jitter": True},
        "time_limit": 30.0,
    }
    assert audit_actions(ctx, job_id) == [("create", "operator")]
    page = client.get(response.headers["location"]).text
    assert "Job created." in page
    assert "every 2.0 s" in page


def test_form_errors_are_shown_next_to_their_fields_with_input_kept(
    ctx: AppContext, console: Console
) -> None:
    form = shell_form(
        name="",
        task_mode="registered",
        task="reports.build",
        args='[1, "<b>kept</b>"',
        kwargs="[]",
        every="soon",
        retries="-3",
    )
    response = post(console(Role.OPERATOR), "/jobs/new", form, page="/jobs/new")
    assert response.status_code == 422
    html = response.text
    assert re.search(r'name="args"[^>]*>\[1, &#34;&lt;b&gt;kept&lt;/b&gt;&#34;</textarea>', html)
    assert 'id="error-args"' in html
    assert "is not valid JSON" in html
    assert 'id="error-kwargs"' in html
    assert "must be a JSON object" in html
    assert 'id="error-every"' in html
    assert 'id="error-retries"' in html
    assert 'value="reports.build"' in html
    with ctx.session() as s:
        assert s.scalar(select(Job.id)) is None


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"trigger_kind": "cron", "cron_expr": "61 * * * *"}, "cron_expr", "invalid cron"),
        ({"name": "slash/name"}, "name", "1-200 characters"),
        ({"timezone": "Mars/Base"}, "timezone", "unknown time zone"),
        ({"queue": "bad queue!"}, "queue", "not a valid queue name"),
        ({"param:mainspring.shell:script": ""}, "param:mainspring.shell:", "exactly one"),
        (
            {"builtin": "mainspring.http", "param:mainspring.http:url": "ftp://x"},
            "param:mainspring.http:url",
            "should match",
        ),
    ],
)
def test_invalid_values_are_refused_on_their_field(
    ctx: AppContext, console: Console, changes: dict[str, str], field: str, message: str
) -> None:
    response = post(console(Role.OPERATOR), "/jobs/new", shell_form(**changes), page="/jobs/new")
    assert response.status_code == 422
    error = re.search(rf'id="error-{re.escape(field)}">([^<]*)<', response.text)
    assert error is not None, response.text
    assert message in error.group(1)
    with ctx.session() as s:
        assert s.scalar(select(Job.id)) is None


def test_a_taken_name_is_a_conflict_on_the_name_field(ctx: AppContext, console: Console) -> None:
    add_job(ctx, "every two seconds")
    response = post(console(Role.OPERATOR), "/jobs/new", shell_form(), page="/jobs/new")
    assert response.status_code == 409
    assert re.search(r'id="error-name">a job with this name already exists<', response.text)


def test_http_task_parameters_become_typed_kwargs(ctx: AppContext, console: Console) -> None:
    form = shell_form(
        builtin="mainspring.http",
        **{
            "param:mainspring.http:url": "https://example.com/hook",
            "param:mainspring.http:method": "POST",
            "param:mainspring.http:headers": "X-Team=ops\nAccept=application/json",
            "param:mainspring.http:body": '{"ping": true}',
            "param:mainspring.http:expect_status": "200, 201",
            "param:mainspring.http:timeout": "5",
        },
    )
    response = post(console(Role.OPERATOR), "/jobs/new", form, page="/jobs/new")
    assert response.status_code == 303, response.text
    job = job_row(ctx, int(response.headers["location"].rsplit("/", 1)[1]))
    assert job is not None
    assert job.kwargs == {
        "url": "https://example.com/hook",
        "method": "POST",
        "headers": {"X-Team": "ops", "Accept": "application/json"},
        "body": {"ping": True},
        "expect_status": [200, 201],
        "timeout": 5.0,
        "follow_redirects": False,
    }


def test_edit_saves_a_new_version_and_a_stale_form_is_refused(
    ctx: AppContext, console: Console
) -> None:
    job_id = add_job(ctx)
    client = console(Role.OPERATOR)
    edit_page = client.get(f"/jobs/{job_id}/edit").text
    assert 'name="version" value="1"' in edit_page
    assert 'value="0 2 * * *"' in edit_page
    form = shell_form(name="nightly backup", trigger_kind="cron", cron_expr="30 3 * * *")
    saved = post(client, f"/jobs/{job_id}/edit", {**form, "version": "1"})
    assert saved.status_code == 303
    job = job_row(ctx, job_id)
    assert job is not None
    assert job.version == 2
    assert job.trigger["expr"] == "30 3 * * *"
    stale = post(client, f"/jobs/{job_id}/edit", {**form, "cron_expr": "0 4 * * *", "version": "1"})
    assert stale.status_code == 409
    assert "Someone changed this job" in stale.text
    assert 'value="0 4 * * *"' in stale.text  # the input is kept
    assert job_row(ctx, job_id).trigger["expr"] == "30 3 * * *"  # type: ignore[union-attr]
    assert audit_actions(ctx, job_id) == [("update", "operator")]


def test_clone_prefills_a_copy_under_a_new_name(ctx: AppContext, console: Console) -> None:
    job_id = add_job(ctx, kwargs={"script": "echo clone me"}, tags=["db"])
    page = console(Role.ADMIN).get(f"/jobs/new?clone={job_id}").text
    assert 'value="Copy of nightly backup"' in page
    assert "echo clone me</textarea>" in page
    assert 'value="db"' in page
    assert 'name="version"' not in page
    assert 'action="/jobs/new"' in page


def test_preview_shows_the_next_fires_in_the_jobs_zone(console: Console) -> None:
    client = console(Role.OPERATOR)
    form = {"trigger_kind": "cron", "cron_expr": "0 2 * * *", "timezone": "Asia/Shanghai"}
    answer = post(client, "/jobs/preview", form).json()
    assert answer["error"] is None
    assert len(answer["fires"]) == 5
    assert all(f.endswith("02:00:00.000+08:00") for f in answer["fires"])
    bad = post(client, "/jobs/preview", {**form, "cron_expr": "every day"}).json()
    assert bad["fires"] == []
    assert "has 2 fields" in bad["error"]
    interval = {"trigger_kind": "interval", "every": "500", "every_unit": "ms", "timezone": "UTC"}
    fires = post(client, "/jobs/preview", interval).json()["fires"]
    first, second = (datetime.fromisoformat(f) for f in fires[:2])
    assert second - first == timedelta(milliseconds=500)
    assert client.post("/jobs/preview", data=form).status_code == 403  # no token


def test_form_page_shows_the_preview_without_javascript(console: Console) -> None:
    form = shell_form(trigger_kind="cron", cron_expr="0 2 * * *", intent="preview")
    response = post(console(Role.OPERATOR), "/jobs/new", form, page="/jobs/new")
    assert response.status_code == 200
    assert response.text.count("02:00:00.000+08:00</li>") == 5


# --- the job's page and its actions ---------------------------------------------------------


def test_pause_and_resume_are_audited_with_the_user(ctx: AppContext, console: Console) -> None:
    job_id = add_job(ctx)
    client = console(Role.OPERATOR)
    assert post(client, f"/jobs/{job_id}/pause", {}).status_code == 303
    job = job_row(ctx, job_id)
    assert job is not None
    assert not job.enabled
    assert job.next_fire_at is None
    assert "Job paused" in client.get(f"/jobs/{job_id}").text
    assert post(client, f"/jobs/{job_id}/resume", {}).status_code == 303
    job = job_row(ctx, job_id)
    assert job is not None
    assert job.enabled
    assert job.next_fire_at is not None
    assert audit_actions(ctx, job_id) == [("pause", "operator"), ("resume", "operator")]


def test_run_now_with_edited_arguments(ctx: AppContext, console: Console) -> None:
    job_id = add_job(ctx)
    client = console(Role.OPERATOR)
    response = post(
        client, f"/jobs/{job_id}/run", {"args": "[]", "kwargs": '{"script": "echo now"}'}
    )
    assert response.status_code == 303
    run_id = response.headers["location"].removeprefix("/runs/")
    with ctx.session() as s:
        run = s.get(Run, run_id)
        assert run is not None
        assert (run.job_id, run.kwargs, run.trigger) == (job_id, {"script": "echo now"}, "manual")
    assert ("run", "operator") in audit_actions(ctx, job_id)


def test_run_now_with_bad_json_keeps_the_input(ctx: AppContext, console: Console) -> None:
    job_id = add_job(ctx)
    response = post(console(Role.OPERATOR), f"/jobs/{job_id}/run", {"args": "{}", "kwargs": "{x"})
    assert response.status_code == 422
    assert "must be a JSON array" in response.text
    assert "is not valid JSON" in response.text
    assert ">{x</textarea>" in response.text
    with ctx.session() as s:
        assert s.scalar(select(Run.id)) is None


def test_delete_after_confirmation_keeps_the_runs(ctx: AppContext, console: Console) -> None:
    job_id = add_job(ctx)
    client = console(Role.OPERATOR)
    confirm = client.get(f"/jobs/{job_id}/delete").text
    assert "Delete job nightly backup?" in confirm
    response = post(
        client, f"/jobs/{job_id}/delete", {"version": "1"}, page=f"/jobs/{job_id}/delete"
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/jobs"
    assert job_row(ctx, job_id) is None
    assert "deleted; its runs are kept" in client.get("/jobs").text
    assert audit_actions(ctx, job_id)[-1] == ("delete", "operator")


def test_bulk_pause_and_resume(ctx: AppContext, console: Console) -> None:
    ids = [add_job(ctx, f"job {i}") for i in range(3)]
    client = console(Role.ADMIN)
    form = {"action": "pause", "job": [str(ids[0]), str(ids[2])], "next": "/jobs?q=job"}
    response = post(client, "/jobs/bulk", form)
    assert response.status_code == 303
    assert response.headers["location"] == "/jobs?q=job"
    assert [job_row(ctx, i).enabled for i in ids] == [False, True, False]  # type: ignore[union-attr]
    assert "2 jobs paused." in client.get("/jobs").text
    post(client, "/jobs/bulk", {"action": "resume", "job": [str(i) for i in ids]})
    assert all(job_row(ctx, i).enabled for i in ids)  # type: ignore[union-attr]


def test_list_filters_search_and_sorting(ctx: AppContext, console: Console) -> None:
    alpha = add_job(
        ctx,
        "alpha",
        tags=["db"],
        queue="q1",
        trigger={"kind": "once", "at": "2031-01-01T00:00:00Z"},
    )
    add_job(ctx, "beta", trigger={"kind": "once", "at": "2030-01-01T00:00:00Z"})
    add_job(ctx, "gamma", task="reports.build", trigger={"kind": "manual"}, kwargs={})
    client = console(Role.VIEWER)

    def names(query: str) -> list[str]:
        page = client.get(f"/jobs?{query}")
        assert page.status_code == 200
        return re.findall(r'<a href="/jobs/\d+">([^<]+)</a>', page.text)

    assert names("") == ["alpha", "beta", "gamma"]
    assert names("q=ET") == ["beta"]
    assert names("tag=db") == ["alpha"]
    assert names("queue=q1") == ["alpha"]
    assert names("task=reports.build") == ["gamma"]
    assert names("sort=-name") == ["gamma", "beta", "alpha"]
    assert names("sort=next_fire_at") == ["beta", "alpha", "gamma"]  # 2030, 2031, never
    assert names("sort=-next_fire_at") == ["alpha", "beta", "gamma"]  # never is always last
    post(console(Role.OPERATOR), "/jobs/bulk", {"action": "pause", "job": str(alpha)})
    assert names("state=paused") == ["alpha"]
    assert names("state=enabled") == ["beta", "gamma"]


def test_job_page_shows_success_rate_chart_and_history(ctx: AppContext, console: Console) -> None:
    job_id = add_job(ctx, description=f"backs up {XSS}")
    at = datetime(2025, 3, 1, tzinfo=UTC)
    with ctx.session() as s:
        for i, state in enumerate(["SUCCESS", "SUCCESS", "SUCCESS", "FAILURE", "SKIPPED"]):
            s.add(
                Run(
                    id=f"r{i}",
                    job_id=job_id,
                    task="mainspring.shell",
                    args=[XSS],
                    kwargs={},
                    options={},
                    state=state,
                    attempt=0,
                    trigger="schedule",
                    created_at=at + timedelta(minutes=i),
                    updated_at=at,
                    log_bytes=0,
                    log_truncated=False,
                    runtime_ms=None if state == "SKIPPED" else 1000.0 * (i + 1),
                    result={"exit_code": 0, "output_tail": f"done {XSS}\n"},
                )
            )
    page = console(Role.VIEWER).get(f"/jobs/{job_id}").text
    assert "<strong>75%</strong>" in page
    assert "3 of 4 ended runs" in page
    assert page.count('<rect class="bar') == 4
    assert 'class="bar state-failure"' in page
    assert XSS not in page
    assert "backs up &lt;script&gt;" in page
    assert "done &lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_job_page_lists_its_changes(ctx: AppContext, console: Console) -> None:
    client = console(Role.OPERATOR)
    response = post(client, "/jobs/new", shell_form(), page="/jobs/new")
    job_url = response.headers["location"]
    post(client, f"{job_url}/pause", {})
    changes = client.get(job_url).text.split("<h2>Changes</h2>")[1]
    assert changes.index(">pause<") < changes.index(">create<")  # newest first
    assert "<del>true</del> → <ins>false</ins>" in changes
    assert changes.count(">operator<") == 2
    assert "testclient" not in changes  # addresses are for admins only
    assert "testclient" in console(Role.ADMIN).get(job_url).text


def test_an_error_inside_kwargs_is_shown_on_kwargs_naming_the_part(
    ctx: AppContext, console: Console
) -> None:
    form = shell_form(
        task_mode="registered",
        task="mainspring.workflow",
        args="[]",
        kwargs='{"definition": {"kind": "nonsense"}}',
    )
    response = post(console(Role.OPERATOR), "/jobs/new", form, page="/jobs/new")
    assert response.status_code == 422
    error = re.search(r'id="error-kwargs">([^<]*)<', response.text)
    assert error is not None, response.text
    assert error.group(1).startswith("kwargs.definition")
    with ctx.session() as s:
        assert s.scalar(select(Job.id)) is None
