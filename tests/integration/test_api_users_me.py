"""``/api/v1/me``: who am I, and changing your own password (rate-limited guesses)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from mainspring.context import AppContext
from mainspring.core.states import Role
from mainspring.db.models import AuditEntry
from mainspring.services import users as user_service
from mainspring.services.auth import create_api_token

PASSWORD = "correct-horse-1"
ROLES: list[Role | None] = [Role.ADMIN, Role.OPERATOR, Role.VIEWER, None]


pytestmark = pytest.mark.usefixtures("fast_argon2")


def _audit(ctx: AppContext, action: str) -> list[AuditEntry]:
    with ctx.session() as s:
        rows = s.query(AuditEntry).filter_by(object_type="user", action=action).all()
        s.expunge_all()
        return rows


@pytest.mark.parametrize("role", ROLES)
def test_me_tells_every_user_who_they_are(
    client: TestClient, auth: dict, role: Role | None
) -> None:
    response = client.get("/api/v1/me", headers=auth[role])
    if role is None:
        assert response.status_code == 401
        return
    assert response.status_code == 200
    body = response.json()
    assert (body["username"], body["role"], body["effective_role"]) == (role, role, role)
    assert body["auth_method"] == "token"


def test_me_shows_the_role_a_token_limits_to(ctx: AppContext, client: TestClient) -> None:
    with ctx.session() as s:
        admin = user_service.get_user_by_name(s, "admin")
        secret, _ = create_api_token(s, admin, "ro", role=Role.VIEWER)
    body = client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"}).json()
    assert (body["role"], body["effective_role"]) == ("admin", "viewer")


@pytest.mark.parametrize("role", ROLES)
def test_everyone_changes_their_own_password_with_the_current_one(
    ctx: AppContext, client: TestClient, auth: dict, role: Role | None
) -> None:
    body = {"current_password": PASSWORD, "new_password": "brand-new-pass"}
    response = client.post("/api/v1/me/password", json=body, headers=auth[role])
    if role is None:
        assert response.status_code == 401
        return
    assert response.status_code == 204
    assert client.get("/api/v1/me", auth=(role.value, "brand-new-pass")).status_code == 200
    assert client.get("/api/v1/me", auth=(role.value, PASSWORD)).status_code == 401
    [entry] = _audit(ctx, "update")
    assert entry.actor == role.value
    assert "brand-new-pass" not in str(entry.changes)


def test_wrong_current_password_is_a_422_and_changes_nothing(
    client: TestClient, auth: dict
) -> None:
    body = {"current_password": "not-it-at-all", "new_password": "brand-new-pass"}
    response = client.post("/api/v1/me/password", json=body, headers=auth[Role.VIEWER])
    assert response.status_code == 422
    assert response.json()["detail"]["field"] == "current_password"
    assert client.get("/api/v1/me", auth=("viewer", PASSWORD)).status_code == 200


def test_guessing_the_current_password_is_rate_limited(client: TestClient, auth: dict) -> None:
    body = {"current_password": "not-it-at-all", "new_password": "brand-new-pass"}
    statuses = [
        client.post("/api/v1/me/password", json=body, headers=auth[Role.VIEWER]).status_code
        for _ in range(11)
    ]
    assert statuses == [422] * 10 + [429]
    right = {"current_password": PASSWORD, "new_password": "brand-new-pass"}
    blocked = client.post("/api/v1/me/password", json=right, headers=auth[Role.VIEWER])
    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) > 0
