"""Who may call the JSON API: Basic, bearer tokens, the console session, roles, anonymous."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Annotated

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from mainspring.api.app import create_app
from mainspring.api.auth import CurrentUser, require_role
from mainspring.context import AppContext
from mainspring.core.states import Role
from mainspring.db.models import ApiToken, User
from mainspring.services.auth import Principal, create_api_token, hash_token
from mainspring.services.clock import utcnow
from mainspring.services.users import create_user

PASSWORD = "correct-horse-1"
ROLES = [Role.ADMIN, Role.OPERATOR, Role.VIEWER]


def _add_probe_routes(app: FastAPI) -> None:
    """Routes that exist only here: a write and an admin-only read, to exercise the checks."""

    @app.post("/api/v1/probe")
    def probe(user: CurrentUser) -> dict[str, str]:
        return {"user": user.username, "method": user.method.value}

    @app.get("/api/v1/admin-only")
    def admin_only(
        user: Annotated[Principal, Depends(require_role(Role.ADMIN))],
    ) -> dict[str, str]:
        return {"user": user.username}


@pytest.fixture
def app(ctx: AppContext) -> FastAPI:
    with ctx.session() as s:
        for role in ROLES:
            create_user(s, role.value, PASSWORD, role)
    app = create_app(ctx)
    _add_probe_routes(app)
    return app


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


def _token(
    ctx: AppContext, username: str, role: Role | None = None, expires_at: datetime | None = None
) -> str:
    with ctx.session() as s:
        user = s.query(User).filter_by(username=username).one()
        secret, _row = create_api_token(s, user, "ci", role=role, expires_at=expires_at)
    return secret


def test_anonymous_api_call_gets_401_json_with_basic_challenge(client: TestClient) -> None:
    response = client.get("/api/v1/runs")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Basic")
    assert "authentication required" in response.json()["detail"]


@pytest.mark.parametrize("role", ROLES)
def test_basic_auth_reads_runs_and_jobs_for_every_role(client: TestClient, role: Role) -> None:
    runs = client.get("/api/v1/runs", auth=(role.value, PASSWORD))
    jobs = client.get("/api/v1/jobs", auth=(role.value, PASSWORD))
    assert runs.status_code == 200
    assert runs.json() == {"items": [], "next_cursor": None}
    assert (jobs.json()["items"], jobs.json()["total"]) == ([], 0)


@pytest.mark.parametrize("auth", [("admin", "wrong-password"), ("nobody", PASSWORD), ("admin", "")])
def test_wrong_basic_credentials_get_401(client: TestClient, auth: tuple[str, str]) -> None:
    response = client.get("/api/v1/runs", auth=auth)
    assert response.status_code == 401
    assert response.json() == {"detail": "invalid credentials"}
    assert "www-authenticate" in response.headers


@pytest.mark.parametrize("header", ["Basic !!!notbase64", "Basic YWRtaW4=", "Digest x", "Bearer"])
def test_malformed_authorization_header_gets_401(client: TestClient, header: str) -> None:
    assert client.get("/api/v1/runs", headers={"Authorization": header}).status_code == 401


def test_deactivated_user_cannot_use_basic_auth(ctx: AppContext, client: TestClient) -> None:
    with ctx.session() as s:
        s.query(User).filter_by(username="operator").one().is_active = False
    assert client.get("/api/v1/runs", auth=("operator", PASSWORD)).status_code == 401


def test_valid_bearer_token_authenticates(ctx: AppContext, client: TestClient) -> None:
    token = _token(ctx, "operator")
    response = client.post("/api/v1/probe", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json() == {"user": "operator", "method": "token"}
    with ctx.session() as s:
        row = s.query(ApiToken).filter_by(token_hash=hash_token(token)).one()
        assert row.last_used_at is not None


def test_revoked_bearer_token_gets_401(ctx: AppContext, client: TestClient) -> None:
    token = _token(ctx, "admin")
    with ctx.session() as s:
        s.query(ApiToken).filter_by(token_hash=hash_token(token)).one().revoked_at = utcnow()
    response = client.get("/api/v1/runs", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


def test_expired_bearer_token_gets_401(ctx: AppContext, client: TestClient) -> None:
    token = _token(ctx, "admin", expires_at=utcnow() - timedelta(seconds=1))
    response = client.get("/api/v1/runs", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


def test_unexpired_bearer_token_is_accepted(ctx: AppContext, client: TestClient) -> None:
    token = _token(ctx, "viewer", expires_at=utcnow() + timedelta(hours=1))
    response = client.get("/api/v1/runs", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


def test_unknown_bearer_token_gets_401(client: TestClient) -> None:
    response = client.get("/api/v1/runs", headers={"Authorization": "Bearer ms_made-up"})
    assert response.status_code == 401


def test_token_with_lower_role_cannot_reach_admin_route(
    ctx: AppContext, client: TestClient
) -> None:
    token = _token(ctx, "admin", role=Role.VIEWER)
    response = client.get("/api/v1/admin-only", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403
    assert "admin role" in response.json()["detail"]


def test_token_role_never_exceeds_its_owners_current_role(
    ctx: AppContext, client: TestClient
) -> None:
    token = _token(ctx, "admin")
    with ctx.session() as s:
        s.query(User).filter_by(username="admin").one().role = Role.VIEWER.value
    response = client.get("/api/v1/admin-only", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("role", "status"), [(Role.ADMIN, 200), (Role.OPERATOR, 403), (Role.VIEWER, 403)]
)
def test_role_check_allows_only_enough_privilege(
    client: TestClient, role: Role, status: int
) -> None:
    response = client.get("/api/v1/admin-only", auth=(role.value, PASSWORD))
    assert response.status_code == status


def test_anonymous_role_checked_route_gets_401_not_403(client: TestClient) -> None:
    assert client.get("/api/v1/admin-only").status_code == 401


def _login(client: TestClient, username: str) -> str:
    page = client.get("/login")
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match is not None
    client.post(
        "/login",
        data={"username": username, "password": PASSWORD, "csrf_token": match.group(1)},
        follow_redirects=False,
    )
    session_page = client.get("/jobs")
    token = re.search(r'name="csrf_token" value="([^"]+)"', session_page.text)
    assert token is not None
    return token.group(1)


def test_console_session_cookie_authenticates_api_reads(client: TestClient) -> None:
    _login(client, "viewer")
    assert client.get("/api/v1/runs").status_code == 200


def test_cookie_authenticated_api_write_needs_csrf_header(client: TestClient) -> None:
    csrf = _login(client, "operator")
    assert client.post("/api/v1/probe").status_code == 403
    assert client.post("/api/v1/probe", headers={"X-CSRF-Token": "forged"}).status_code == 403
    ok = client.post("/api/v1/probe", headers={"X-CSRF-Token": csrf})
    assert ok.json() == {"user": "operator", "method": "session"}


def test_healthz_needs_no_auth(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_openapi_schema_is_served_under_api_v1(client: TestClient) -> None:
    schema = client.get("/api/v1/openapi.json").json()
    assert "/api/v1/runs" in schema["paths"]
    assert "/jobs" not in schema["paths"]
    assert client.get("/api/docs").status_code == 200
