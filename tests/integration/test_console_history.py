"""The console's job version history (listed on the job, one version's diffs, rollback by
operators with CSRF and a stale-read guard), a workflow run's steps as a tree on its run page,
and the jobs list sorted by the database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from mainspring.context import AppContext
from mainspring.core.states import Role, RunState
from mainspring.db.models import Job, JobVersion, Run
from mainspring.services.audit import Actor
from mainspring.services.job_queries import lock_job
from mainspring.services.jobs import JobSpec, definition, update_job
from mainspring.workflows.compile import step_id
from mainspring.workflows.definition import WORKFLOW_TASK
from tests.integration.test_console_jobs import (
    OPERATORS,
    XSS,
    Console,
    add_job,
    csrf_of,
    job_row,
)
from tests.integration.test_console_jobs import console as console  # the fixture


def edit_job(ctx: AppContext, job_id: int, **changes: Any) -> None:
    with ctx.session() as s:
        job = lock_job(s, job_id)
        update_job(s, job, JobSpec(**{**definition(job), **changes}), audit=Actor("alice"))


def rollback(client: Any, job_id: int, number: int, current: int | None) -> Any:
    token = csrf_of(client.get(f"/jobs/{job_id}/versions/{number}").text)
    data = {"csrf_token": token, "current_version": str(current or "")}
    url = f"/jobs/{job_id}/versions/{number}/rollback"
    return client.post(url, data=data, follow_redirects=False)


# --- versions -------------------------------------------------------------------------------


def test_job_page_lists_versions_with_who_and_summary(ctx: AppContext, console: Console) -> None:
    job_id = add_job(ctx)
    edit_job(ctx, job_id, description="nightly")
    page = console(Role.VIEWER).get(f"/jobs/{job_id}").text
    versions = page[page.index('id="versions"') :]
    assert 'id="version-2"' in versions
    assert "alice" in versions
    assert "changed description" in versions
    assert f'href="/jobs/{job_id}/versions/1"' in versions
    assert "Diff / roll back" not in versions  # a viewer only reads


def test_version_page_shows_both_diffs(ctx: AppContext, console: Console) -> None:
    job_id = add_job(ctx)
    edit_job(ctx, job_id, description=XSS)
    page = console(Role.OPERATOR).get(f"/jobs/{job_id}/versions/1").text
    assert "Rolling back to this version would change" in page
    assert "&lt;script&gt;" in page
    assert XSS not in page
    assert f'action="/jobs/{job_id}/versions/1/rollback"' in page
    assert 'name="current_version" value="2"' in page
    current = console(Role.OPERATOR).get(f"/jobs/{job_id}/versions/2").text
    assert "What this version changed" in current
    assert "/rollback" not in current  # the current version has nothing to roll back to


@pytest.mark.parametrize("role", OPERATORS)
def test_operators_roll_back_as_a_new_version(
    ctx: AppContext, console: Console, role: Role
) -> None:
    job_id = add_job(ctx)
    edit_job(ctx, job_id, description="changed")
    response = rollback(console(role), job_id, 1, current=2)
    assert response.status_code == 303
    assert response.headers["location"] == f"/jobs/{job_id}"
    job = job_row(ctx, job_id)
    assert job is not None
    assert job.version == 3
    assert job.description != "changed"
    with ctx.session() as s:
        newest = s.query(JobVersion).filter_by(job_id=job_id, version=3).one()
        assert (newest.action, newest.changed_by) == ("rollback", role.value)


def test_viewer_and_forged_rollbacks_are_refused(ctx: AppContext, console: Console) -> None:
    job_id = add_job(ctx)
    edit_job(ctx, job_id, description="changed")
    viewer = console(Role.VIEWER)
    assert rollback(viewer, job_id, 1, current=2).status_code == 403
    operator = console(Role.OPERATOR)
    forged = operator.post(f"/jobs/{job_id}/versions/1/rollback", data={"current_version": "2"})
    assert forged.status_code == 403
    assert job_row(ctx, job_id).version == 2  # type: ignore[union-attr]


def test_rollback_after_a_change_elsewhere_is_refused(ctx: AppContext, console: Console) -> None:
    job_id = add_job(ctx)
    edit_job(ctx, job_id, description="changed")
    client = console(Role.OPERATOR)
    token = csrf_of(client.get(f"/jobs/{job_id}/versions/1").text)
    edit_job(ctx, job_id, description="changed again")  # after the page was read
    data = {"csrf_token": token, "current_version": "2"}
    response = client.post(f"/jobs/{job_id}/versions/1/rollback", data=data)
    assert response.status_code == 409
    assert "it was changed since you read it" in response.text
    assert job_row(ctx, job_id).description == "changed again"  # type: ignore[union-attr]
    same = rollback(client, job_id, 3, current=3)
    assert same.status_code == 409
    assert "nothing to undo" in same.text


# --- workflow steps -------------------------------------------------------------------------

GROUP_THEN = {
    "flow": {
        "chain": [
            {"group": [{"task": "tasks.add", "name": "left"}, {"task": "tasks.add"}]},
            {"task": "tasks.mul"},
        ]
    }
}


def make_run(run_id: str, task: str, state: RunState, **fields: Any) -> Run:
    now = datetime.now(UTC)
    return Run(
        id=run_id, task=task, state=state.value, trigger="api", attempt=0, options={},
        created_at=now, updated_at=now, log_bytes=0, log_truncated=False, **fields,
    )  # fmt: skip


def test_workflow_run_shows_its_steps_as_a_tree(ctx: AppContext, console: Console) -> None:
    start = datetime(2030, 1, 1, tzinfo=UTC)
    left = step_id("wf", "flow.chain[0].group[0]")
    with ctx.session() as s:
        s.add(make_run("wf", WORKFLOW_TASK, RunState.STARTED, kwargs={"definition": GROUP_THEN}))
        s.add(make_run(left, "tasks.add", RunState.SUCCESS, root_id="wf", worker="w1@a",
                       started_at=start, finished_at=start + timedelta(seconds=2),
                       runtime_ms=2000.0))  # fmt: skip
    page = console(Role.VIEWER).get("/runs/wf").text
    steps = page[page.index('id="workflow-steps"') : page.index("</section>", page.index("wf-"))]
    rows = steps.split('<tr class="wf-')[1:]
    assert [row.split('"')[0] for row in rows] == ["chain", "group", "step", "step", "step"]
    assert "padding-left: 3.4rem" in rows[2]  # two levels in
    assert f'href="/runs/{left}"' in rows[2]
    assert "left" in rows[2]
    assert "SUCCESS" in rows[2]
    assert "2.0 s" in rows[2]
    assert "w1@a" in rows[2]
    assert "PENDING" in rows[3]
    assert "PENDING" in rows[4]


def test_a_plain_run_has_no_steps(ctx: AppContext, console: Console) -> None:
    with ctx.session() as s:
        s.add(make_run("plain", "tasks.add", RunState.SUCCESS))
    assert 'id="workflow-steps"' not in console(Role.VIEWER).get("/runs/plain").text


# --- sorting --------------------------------------------------------------------------------


def test_jobs_sorted_by_the_database_across_pages(ctx: AppContext, console: Console) -> None:
    ids = [add_job(ctx, f"job {i:03d}") for i in range(120)]
    base = datetime(2030, 1, 1, tzinfo=UTC)
    with ctx.session() as s:
        for n, job_id in enumerate(ids[:110]):  # the last 10 never fire
            fire = base + timedelta(minutes=(n * 37) % 110)
            s.execute(update(Job).where(Job.id == job_id).values(next_fire_at=fire))
        s.execute(update(Job).where(Job.id.in_(ids[110:])).values(next_fire_at=None))
    client = console(Role.VIEWER)

    def names(query: str) -> list[str]:
        page = client.get(f"/jobs?{query}").text
        return [n for n in page.split('">job ')[1:] for n in [n.split("<")[0]]]

    first, second = names("sort=next_fire_at"), names("sort=next_fire_at&page=2")
    assert len(first) == 100
    assert len(second) == 20
    order = [(n * 37) % 110 for n in range(110)]
    expected = [f"{i:03d}" for i in sorted(range(110), key=lambda i: order[i])]
    assert first + second[:10] == expected
    assert second[10:] == [f"{i:03d}" for i in range(110, 120)]  # never: last
    assert names("sort=-next_fire_at")[0] == expected[-1]
    assert names("sort=-name")[0] == "119"
    unknown = client.get("/jobs?sort=bogus").text
    assert "This sort order is not known" in unknown
