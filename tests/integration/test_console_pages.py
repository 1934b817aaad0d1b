"""The console as a browser sees it: login with CSRF, pages, escaping, logout, redirects."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from mainspring.api.app import create_app
from mainspring.context import AppContext
from mainspring.core.states import Role
from mainspring.db.models import Run, RunLog, User
from mainspring.services.jobs import JobSpec, create_job
from mainspring.services.users import create_user, hash_password

PASSWORD = "operator-password"
XSS = "<script>alert(1)</script>"
CREATED = datetime(2025, 3, 1, 4, 0, tzinfo=UTC)


@pytest.fixture
def client(ctx: AppContext) -> Iterator[TestClient]:
    with ctx.session() as s:
        create_user(s, "operator", PASSWORD, Role.OPERATOR)
        job = create_job(
            s,
            JobSpec(
                name="hourly sync",
                task="sync.pull",
                trigger={"kind": "cron", "expr": "0 * * * *"},
                timezone="Europe/Berlin",
            ),
        )
        s.add(_run("run-1", job.id))
        s.flush()
        s.add(RunLog(run_id="run-1", seq=0, at=CREATED, stream="log", text=f"said {XSS}\n"))
    with TestClient(create_app(ctx)) as client:
        yield client


def _run(run_id: str, job_id: int | None) -> Run:
    return Run(
        id=run_id,
        job_id=job_id,
        task="sync.pull",
        args=[XSS],
        kwargs={"mode": "full"},
        options={},
        queue="default",
        worker="w1@host",
        state="FAILURE",
        attempt=1,
        trigger="schedule",
        created_at=CREATED,
        started_at=CREATED,
        finished_at=CREATED,
        updated_at=CREATED,
        runtime_ms=1500.0,
        exception_type="RuntimeError",
        exception_message=XSS,
        log_bytes=0,
        log_truncated=False,
    )


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match is not None, "page has no CSRF field"
    return match.group(1)


def _login(
    client: TestClient, password: str = PASSWORD, next_path: str = "", csrf: str | None = None
) -> Response:
    issued = _csrf(client.get("/login").text)
    token = issued if csrf is None else csrf
    form = {"username": "operator", "password": password, "csrf_token": token}
    if next_path:
        form["next"] = next_path
    return client.post("/login", data=form, follow_redirects=False)


def test_anonymous_page_redirects_to_login_with_next(client: TestClient) -> None:
    response = client.get("/runs?state=FAILURE", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/runs%3Fstate%3DFAILURE"
    assert client.get("/jobs", follow_redirects=False).headers["location"] == "/login?next=/jobs"


def test_root_goes_to_the_dashboard(client: TestClient) -> None:
    response = client.get("/", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard"


def test_login_lands_on_the_dashboard_then_jobs_page_lists_the_job(client: TestClient) -> None:
    response = _login(client)
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard"
    page = client.get("/jobs")
    assert page.status_code == 200
    assert "hourly sync" in page.text
    assert "cron 0 * * * *" in page.text
    assert "Europe/Berlin" in page.text


def test_session_cookie_is_http_only_lax_and_twelve_hours(client: TestClient) -> None:
    cookie = _login(client).headers["set-cookie"]
    assert cookie.startswith("mainspring_session=")
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "Max-Age=43200" in cookie
    assert "secure" not in cookie


def test_secure_cookie_when_configured(ctx: AppContext) -> None:
    secure = AppContext(
        settings=ctx.settings.model_copy(update={"cookie_secure": True}),
        engine=ctx.engine,
        sessions=ctx.sessions,
    )
    with TestClient(create_app(secure), base_url="https://testserver") as client:
        assert "secure" in client.get("/login").headers["set-cookie"]


def test_login_goes_to_a_relative_next_path(client: TestClient) -> None:
    assert _login(client, next_path="/runs?state=FAILURE").headers["location"] == (
        "/runs?state=FAILURE"
    )


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:x"]
)
def test_login_never_redirects_off_site(client: TestClient, target: str) -> None:
    assert _login(client, next_path=target).headers["location"] == "/dashboard"


def test_login_without_csrf_token_is_forbidden(client: TestClient) -> None:
    client.get("/login")
    response = client.post("/login", data={"username": "operator", "password": PASSWORD})
    assert response.status_code == 403
    assert "security token" in response.text
    assert client.get("/jobs", follow_redirects=False).status_code == 303


def test_login_with_wrong_csrf_token_is_forbidden(client: TestClient) -> None:
    response = _login(client, csrf="not-the-token")
    assert response.status_code == 403
    assert client.get("/jobs", follow_redirects=False).status_code == 303


def test_login_csrf_token_from_another_session_is_forbidden(ctx: AppContext) -> None:
    with TestClient(create_app(ctx)) as attacker, TestClient(create_app(ctx)) as victim:
        stolen = _csrf(attacker.get("/login").text)
        assert _login(victim, csrf=stolen).status_code == 403


def test_wrong_password_reshows_the_form_keeping_the_username(client: TestClient) -> None:
    response = _login(client, password="nope-nope")
    assert response.status_code == 200
    assert "Wrong username or password." in response.text
    assert 'name="username" value="operator"' in response.text
    assert client.get("/jobs", follow_redirects=False).status_code == 303


def test_logout_needs_csrf_and_ends_the_session(client: TestClient) -> None:
    _login(client)
    token = _csrf(client.get("/jobs").text)
    assert client.post("/logout", data={}).status_code == 403
    assert client.get("/jobs").status_code == 200
    response = client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login"
    assert client.get("/jobs", follow_redirects=False).status_code == 303


def test_script_in_job_name_is_shown_as_text(ctx: AppContext, client: TestClient) -> None:
    with ctx.session() as s:
        job = create_job(
            s,
            JobSpec(
                name="placeholder",
                task="t.x",
                trigger={"kind": "manual"},
                timezone="UTC",
            ),
        )
        job.name = XSS  # the service refuses such names; the page must be safe anyway
    _login(client)
    page = client.get("/jobs").text
    assert XSS not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_run_detail_shows_timeline_in_display_zone_and_escapes_everything(
    client: TestClient,
) -> None:
    _login(client)
    page = client.get("/runs/run-1")
    assert page.status_code == 200
    assert XSS not in page.text
    assert "said &lt;script&gt;" in page.text  # the log, escaped
    assert "RuntimeError" in page.text
    assert "2025-03-01T12:00:00.000+08:00" in page.text  # Asia/Shanghai, from settings
    assert "hourly sync" in page.text
    assert "&#34;mode&#34;: &#34;full&#34;" in page.text


def test_runs_page_lists_runs_and_filters_by_state(client: TestClient) -> None:
    _login(client)
    page = client.get("/runs").text
    assert 'href="/runs/run-1"' in page
    assert "1.5 s" in page
    assert 'href="/runs/run-1"' not in client.get("/runs?state=SUCCESS").text


def test_runs_page_links_to_the_next_page(ctx: AppContext, client: TestClient) -> None:
    with ctx.session() as s:
        for i in range(60):
            s.add(_run(f"bulk-{i:02d}", None))
            s.flush()
    _login(client)
    first = client.get("/runs").text
    match = re.search(r'href="(/runs\?cursor=[^"]+)" rel="next"', first)
    assert match is not None
    second = client.get(match.group(1).replace("&amp;", "&")).text
    assert "Next page" not in second
    first_ids = set(re.findall(r'href="/runs/([^"?]+)"', first))
    second_ids = set(re.findall(r'href="/runs/([^"?]+)"', second))
    assert len(first_ids) == 50
    assert len(second_ids) == 11
    assert not first_ids & second_ids


def test_bad_filter_value_shows_an_error_page_not_a_500(client: TestClient) -> None:
    _login(client)
    assert client.get("/runs?state=EXPLODED").status_code == 422
    assert client.get("/runs?job_id=abc").status_code == 422
    missing = client.get("/runs/does-not-exist")
    assert missing.status_code == 404
    assert "no run with id" in missing.text


def test_changed_password_ends_existing_sessions(ctx: AppContext, client: TestClient) -> None:
    _login(client)
    with ctx.session() as s:
        s.query(User).filter_by(username="operator").one().password_hash = hash_password(
            "a-new-password"
        )
    assert client.get("/jobs", follow_redirects=False).status_code == 303


def test_deactivated_user_is_logged_out(ctx: AppContext, client: TestClient) -> None:
    _login(client)
    with ctx.session() as s:
        s.query(User).filter_by(username="operator").one().is_active = False
    assert client.get("/jobs", follow_redirects=False).status_code == 303


def test_pages_forbid_framing_and_foreign_scripts(client: TestClient) -> None:
    headers = client.get("/login").headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"


def test_static_css_is_served(client: TestClient) -> None:
    response = client.get("/static/app.css")
    assert response.status_code == 200
    assert "prefers-color-scheme: dark" in response.text
