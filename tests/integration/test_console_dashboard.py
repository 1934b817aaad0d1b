"""The console's dashboard: jobs, the last 24 h of runs by state and by hour as SVG, failures,
runs in progress, workers and lateness, for every role, escaped and in 简体中文."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mainspring.context import AppContext
from mainspring.core.states import Role
from mainspring.db.models import Worker
from mainspring.services.clock import utcnow
from tests.integration.test_console_jobs import ROLES, XSS, Console, add_job
from tests.integration.test_console_jobs import console as console  # the fixture
from tests.integration.test_console_runs import add_run


def add_worker(ctx: AppContext, hostname: str, status: str = "online", **values: object) -> None:
    now = utcnow()
    with ctx.session() as s:
        s.add(
            Worker(
                hostname=hostname,
                status=status,
                queues=values.pop("queues", ["default"]),
                registered_tasks=[],
                concurrency=values.pop("concurrency", 4),
                active=values.pop("active", 0),
                processed=values.pop("processed", 0),
                software={},
                capabilities={},
                first_seen_at=now,
                last_heartbeat_at=values.pop("last_heartbeat_at", now),
                updated_at=now,
                **values,
            )
        )


def seed(ctx: AppContext) -> None:
    now = utcnow()
    job_id = add_job(ctx, "nightly")
    add_job(ctx, "paused one", enabled=False)
    add_run(ctx, "ok1", job_id=job_id, created_at=now - timedelta(hours=1), lateness_ms=40.0)
    add_run(ctx, "ok2", created_at=now - timedelta(hours=2), lateness_ms=80.0)
    add_run(ctx, "ok3", created_at=now - timedelta(hours=2), lateness_ms=120.0)
    add_run(ctx, "bad1", job_id=job_id, state="FAILURE", created_at=now - timedelta(hours=3),
            exception_type="ValueError", exception_message=XSS)  # fmt: skip
    add_run(ctx, "busy", state="STARTED", created_at=now - timedelta(minutes=1))
    add_run(ctx, "old-failure", state="FAILURE", created_at=now - timedelta(days=3))
    add_worker(ctx, "w1@host")
    add_worker(ctx, "w2@host", status="offline")


@pytest.mark.parametrize("role", ROLES)
def test_dashboard_by_role(ctx: AppContext, console: Console, role: Role | None) -> None:
    seed(ctx)
    response = console(role).get("/dashboard", follow_redirects=False)
    if role is None:
        assert response.status_code == 303
        assert response.headers["location"] == "/login?next=/dashboard"
        return
    assert response.status_code == 200
    page = response.text
    assert '<span class="figure">1</span> jobs enabled' in page
    assert '<span class="figure">1</span> jobs paused' in page
    assert '<span class="figure">5</span> runs in the last 24 h' in page  # not the 3-day-old one
    assert "75.0 %" in page  # 3 succeeded of 4 ended; the running one is not counted
    assert '<span class="figure">1</span> running now' in page
    assert '<span class="figure">1</span> workers online of 2' in page
    assert "80 ms / 120 ms" in page  # nearest-rank p50 / p95 of 40, 80, 120
    assert 'href="/runs/bad1"' in page
    assert 'href="/runs/busy"' in page
    assert 'href="/runs/old-failure"' not in page
    assert XSS not in page
    assert "&lt;script&gt;" in page


def test_chart_is_svg_with_a_segment_per_state_and_hour(ctx: AppContext, console: Console) -> None:
    seed(ctx)
    page = console(Role.VIEWER).get("/dashboard").text
    svg = page[page.index("<svg") : page.index("</svg>")]
    assert svg.count('class="bar state-success"') == 2  # two hours with successes
    assert svg.count('class="bar state-failure"') == 1
    assert svg.count('class="bar state-started"') == 1
    assert "style=" not in page
    assert "<script>" not in page


def test_empty_dashboard_says_so(console: Console) -> None:
    page = console(Role.VIEWER).get("/dashboard").text
    assert "No runs in the last 24 hours." in page
    assert "<svg" not in page
    assert "Nothing is running." in page


def test_dashboard_in_chinese(ctx: AppContext, console: Console) -> None:
    seed(ctx)
    page = console(Role.VIEWER).get("/dashboard", headers={"Accept-Language": "zh-CN"}).text
    assert "<h1>仪表盘</h1>" in page
    assert "最近的失败" in page
