"""The console's run pages: the history with its filters, keyset pages and live refresh, and
one run with its timeline, outcome, log and broadcast copies, everything escaped."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mainspring.context import AppContext
from mainspring.core.states import Role
from mainspring.db.models import Run, RunLog
from tests.integration.test_console_jobs import ROLES, XSS, Console, add_job
from tests.integration.test_console_jobs import console as console  # the fixture

AT = datetime(2025, 3, 1, 4, 0, tzinfo=UTC)  # 12:00 in Asia/Shanghai, the test settings' zone


def add_run(ctx: AppContext, run_id: str, **values: Any) -> None:
    created = values.pop("created_at", AT)
    row: dict[str, Any] = {
        "task": "mainspring.shell",
        "args": [],
        "kwargs": {"script": "echo hi"},
        "options": {},
        "queue": "default",
        "state": "SUCCESS",
        "attempt": 0,
        "trigger": "schedule",
        "created_at": created,
        "updated_at": created,
        "log_bytes": 0,
        "log_truncated": False,
        **values,
    }
    with ctx.session() as s:
        s.add(Run(id=run_id, **row))


def run_ids(html: str) -> list[str]:
    return re.findall(r'<td><a href="/runs/([^"]+)"><span class="state', html)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("page", ["/runs", "/runs/r1"])
def test_run_pages_by_role(ctx: AppContext, console: Console, role: Role | None, page: str) -> None:
    add_run(ctx, "r1", worker="db-01@prod")
    response = console(role).get(page, follow_redirects=False)
    if role is None:
        assert response.status_code == 303
        assert response.headers["location"] == f"/login?next={page}"
    else:
        assert response.status_code == 200
        assert "db-01@prod" in response.text


def test_viewer_sees_no_run_actions(ctx: AppContext, console: Console) -> None:
    add_run(ctx, "busy", state="STARTED")
    viewer_page = console(Role.VIEWER).get("/runs/busy").text
    operator_page = console(Role.OPERATOR).get("/runs/busy").text
    for action in ("/runs/busy/terminate", "/runs/busy/rerun", "/runs/busy/revoke"):
        assert action not in viewer_page
    assert "/runs/busy/terminate" in operator_page
    assert "/runs/busy/rerun" in operator_page
    assert "/runs/busy/revoke" not in operator_page  # running: terminate, not revoke


def test_runs_filters(ctx: AppContext, console: Console) -> None:
    job_id = add_job(ctx, "backup")
    add_run(ctx, "a", job_id=job_id, worker="w1", queue="q1", state="FAILURE")
    add_run(ctx, "b", worker="w2", trigger="api", created_at=AT + timedelta(hours=2))
    add_run(ctx, "c", task="reports.build", queue="q2", created_at=AT + timedelta(hours=4))
    client = console(Role.VIEWER)

    def ids(query: str) -> list[str]:
        page = client.get(f"/runs?{query}")
        assert page.status_code == 200, page.text
        return run_ids(page.text)

    assert ids("") == ["c", "b", "a"]
    assert ids("job=backup") == ["a"]
    assert ids(f"job={job_id}") == ["a"]
    assert ids("state=FAILURE") == ["a"]
    assert ids("worker=w2") == ["b"]
    assert ids("queue=q2") == ["c"]
    assert ids("task=reports.build") == ["c"]
    assert ids("trigger=api") == ["b"]
    # The range is read in the reader's zone (Asia/Shanghai): 14:00 to 16:00 there.
    assert ids("after=2025-03-01T14:00&before=2025-03-01T16:00") == ["b"]


def test_a_filter_that_cannot_apply_is_shown_on_its_input(console: Console) -> None:
    client = console(Role.VIEWER)
    unknown = client.get("/runs?job=no-such-job")
    assert unknown.status_code == 422
    assert "no job has this name" in unknown.text
    assert 'value="no-such-job"' in unknown.text
    backwards = client.get("/runs?after=2025-03-02T00:00&before=2025-03-01T00:00")
    assert backwards.status_code == 422
    assert "must be later than created_after" in backwards.text
    assert client.get("/runs?after=yesterday").status_code == 422


def test_next_page_keeps_the_filters_and_only_the_newest_page_refreshes(
    ctx: AppContext, console: Console
) -> None:
    for i in range(55):
        add_run(ctx, f"run-{i:02d}", worker="w1", created_at=AT + timedelta(seconds=i))
    add_run(ctx, "elsewhere", worker="w2")
    client = console(Role.VIEWER)
    first = client.get("/runs?worker=w1").text
    assert 'id="runs-live" data-live="3"' in first
    link = re.search(r'href="(/runs\?[^"]+)" rel="next"', first)
    assert link is not None
    second = client.get(link.group(1).replace("&amp;", "&")).text
    assert "data-live=" not in second
    assert run_ids(second) == [f"run-{i:02d}" for i in range(4, -1, -1)]
    assert len(run_ids(first)) == 50


def test_run_detail_timeline_with_lateness_and_queue_wait(
    ctx: AppContext, console: Console
) -> None:
    add_run(
        ctx,
        "timed",
        scheduled_for=AT,
        sent_at=AT + timedelta(milliseconds=4),
        received_at=AT + timedelta(milliseconds=10),
        started_at=AT + timedelta(milliseconds=250),
        finished_at=AT + timedelta(seconds=2),
        lateness_ms=4.0,
        runtime_ms=1750.0,
    )
    page = console(Role.VIEWER).get("/runs/timed").text
    assert "2025-03-01T12:00:00.004+08:00" in page  # sent, in the reader's zone
    assert '<em class="delta">+240 ms</em>' in page  # received → started
    assert re.search(r"Queue wait</dt><dd>246 ms<", page)
    assert re.search(r"Lateness</dt><dd>4 ms<", page)
    assert re.search(r"Runtime</dt><dd>1.8 s<", page)
    assert 'data-follow="false"' in page


def test_a_running_run_is_followed_and_everything_is_escaped(
    ctx: AppContext, console: Console
) -> None:
    add_run(
        ctx, "live", state="STARTED", args=[XSS], kwargs={"note": XSS}, worker=XSS,
        exception_type="ValueError", exception_message=XSS, traceback=f"Traceback {XSS}",
    )  # fmt: skip
    with ctx.session() as s:
        s.add(RunLog(run_id="live", seq=0, at=AT, stream="log", text=f"one {XSS}\n"))
        s.add(RunLog(run_id="live", seq=1, at=AT, stream="log", text="two\n"))
    page = console(Role.OPERATOR).get("/runs/live").text
    assert XSS not in page
    assert 'data-follow="true"' in page
    assert 'data-last-seq="1"' in page
    assert "one &lt;script&gt;alert(1)&lt;/script&gt;\ntwo\n</pre>" in page
    assert "Traceback &lt;script&gt;" in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 5


def test_a_broadcast_lists_its_hosts_and_how_many_succeeded(
    ctx: AppContext, console: Console
) -> None:
    add_run(ctx, "parent", options={"broadcast": True}, trigger="api")
    for host, state in (("web-2", "FAILURE"), ("web-1", "SUCCESS"), ("web-3", "SUCCESS")):
        output = {"exit_code": 0, "output_tail": f"up on {host}\n"}
        add_run(ctx, f"copy-{host}", parent_id="parent", worker=f"{host}@x", state=state,
                queue=f"host.{host}@x", result=output)  # fmt: skip
    page = console(Role.VIEWER).get("/runs/parent").text
    assert "2 of 3 succeeded" in page
    hosts = re.findall(r"<td>(web-\d)@x</td>", page)
    assert hosts == ["web-1", "web-2", "web-3"]
    assert "up on web-3" in page
    child = console(Role.VIEWER).get("/runs/copy-web-1").text
    assert 'href="/runs/parent"' in child


def test_runs_table_shows_output_and_failures(ctx: AppContext, console: Console) -> None:
    add_run(ctx, "ok", result={"exit_code": 0, "output_tail": "first\nlast line\n"})
    add_run(ctx, "bad", state="FAILURE", exception_type="ShellFailed", exception_message="exit 3",
            created_at=AT + timedelta(seconds=1))  # fmt: skip
    page = console(Role.VIEWER).get("/runs").text
    assert '<td class="output">last line</td>' in page
    assert "ShellFailed: exit 3" in page
