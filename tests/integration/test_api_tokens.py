"""``/api/v1/tokens``: shown once, stored hashed, capped by role, listed and revoked per owner."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from mainspring.api.app import create_app
from mainspring.context import AppContext
from mainspring.core.states import Role
from mainspring.db.models import ApiToken, AuditEntry
from mainspring.services import users as user_service
from mainspring.services.auth import create_api_token, hash_token
from mainspring.services.clock import utcnow
from mainspring.services.users import create_user

PASSWORD = "correct-horse-1"
ROLES: list[Role | None] = [Role.ADMIN, Role.OPERATOR, Role.VIEWER, None]


@pytest.fixture(autouse=True)
def fast_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        user_service, "_hasher", PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
    )


@pytest.fixture
def client(ctx: AppContext) -> Iterator[TestClient]:
    """Users named after their roles; requests authenticate with HTTP Basic."""
    with ctx.session() as s:
        for role in Role:
            create_user(s, role.value, PASSWORD, role)
    with TestClient(create_app(ctx)) as client:
        yield client


def basic(role: Role | None) -> tuple[str, str] | None:
    return (role.value, PASSWORD) if role else None


def _create(client: TestClient, role: Role | None, **body: object) -> dict:
    response = client.post("/api/v1/tokens", json={"name": "ci", **body}, auth=basic(role))
    assert response.status_code == 201, response.text
    return dict(response.json())


def _seed_token(ctx: AppContext, username: str, name: str = "seeded") -> int:
    with ctx.session() as s:
        user = user_service.get_user_by_name(s, username)
        _secret, row = create_api_token(s, user, name)
        return row.id


@pytest.mark.parametrize("role", ROLES)
def test_every_user_creates_a_token_whose_secret_is_shown_once_and_stored_hashed(
    ctx: AppContext, client: TestClient, role: Role | None
) -> None:
    response = client.post("/api/v1/tokens", json={"name": "ci"}, auth=basic(role))
    if role is None:
        assert response.status_code == 401
        return
    assert response.status_code == 201
    body = response.json()
    secret = body["secret"]
    assert secret.startswith("ms_")
    assert len(secret) > 40
    assert (body["role"], body["username"], body["status"]) == (role, role, "active")
    assert secret.startswith(body["prefix"])
    with ctx.session() as s:
        row = s.get(ApiToken, body["id"])
        assert row is not None
        assert row.token_hash == hash_token(secret)
        audit = s.query(AuditEntry).filter_by(object_type="token").one()
        assert (audit.actor, audit.action, audit.object_id) == (role, "create", str(row.id))
        assert secret not in str(audit.changes)
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert me.json()["username"] == role.value
    listed = client.get("/api/v1/tokens", auth=basic(role)).text
    assert secret not in listed
    assert row.token_hash not in listed


@pytest.mark.parametrize(
    ("role", "asked", "status"),
    [
        (Role.VIEWER, "operator", 422),
        (Role.VIEWER, "admin", 422),
        (Role.OPERATOR, "admin", 422),
        (Role.OPERATOR, "viewer", 201),
        (Role.ADMIN, "viewer", 201),
    ],
)
def test_token_role_cannot_exceed_the_callers(
    client: TestClient, role: Role, asked: str, status: int
) -> None:
    body = {"name": "ci", "role": asked}
    response = client.post("/api/v1/tokens", json=body, auth=basic(role))
    assert response.status_code == status
    if status == 422:
        assert response.json()["detail"]["field"] == "role"
    else:
        assert response.json()["role"] == asked


def test_admin_creates_a_token_for_another_user_capped_by_their_role(
    client: TestClient,
) -> None:
    body = _create(client, Role.ADMIN, username="viewer")
    assert (body["username"], body["role"]) == ("viewer", "viewer")
    too_high = {"name": "x", "username": "viewer", "role": "operator"}
    response = client.post("/api/v1/tokens", json=too_high, auth=basic(Role.ADMIN))
    assert response.status_code == 422
    assert response.json()["detail"]["field"] == "role"


@pytest.mark.parametrize("role", [Role.OPERATOR, Role.VIEWER])
def test_non_admins_cannot_create_tokens_for_others(client: TestClient, role: Role) -> None:
    body = {"name": "ci", "username": "admin"}
    response = client.post("/api/v1/tokens", json=body, auth=basic(role))
    assert response.status_code == 403
    own = client.post("/api/v1/tokens", json={**body, "username": role.value}, auth=basic(role))
    assert own.status_code == 201


def test_token_for_unknown_user_is_404(client: TestClient) -> None:
    body = {"name": "ci", "username": "ghost"}
    assert client.post("/api/v1/tokens", json=body, auth=basic(Role.ADMIN)).status_code == 404


def test_expires_in_days_sets_the_expiry(client: TestClient) -> None:
    body = _create(client, Role.OPERATOR, expires_in_days=7)
    listed = client.get("/api/v1/tokens", auth=basic(Role.OPERATOR)).json()["items"][0]
    assert listed["expires_at"] == body["expires_at"]
    from datetime import datetime

    expires = datetime.fromisoformat(body["expires_at"])
    assert abs(expires - (utcnow() + timedelta(days=7))) < timedelta(minutes=1)


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"expires_in_days": 0}, "expires_in_days"),
        ({"expires_in_days": 10_000}, "expires_in_days"),
        ({"expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"expires_at": "2999-01-01T00:00:00"}, "expires_at"),
        ({"expires_at": "2999-01-01T00:00:00Z"}, "expires_at"),
        ({"expires_at": "2030-01-01T00:00:00Z", "expires_in_days": 3}, "expires_at"),
        ({"name": ""}, "name"),
        ({"name": "x" * 151}, "name"),
        ({"name": "tab\there"}, "name"),
        ({"role": "root"}, "role"),
        ({"secret": "mine"}, "secret"),
    ],
)
def test_invalid_token_input_is_a_422_naming_the_field(
    client: TestClient, extra: dict, field: str
) -> None:
    body = {"name": "ci", **extra}
    response = client.post("/api/v1/tokens", json=body, auth=basic(Role.ADMIN))
    assert response.status_code == 422
    assert field in response.text


@pytest.mark.parametrize("role", ROLES)
def test_admins_list_all_tokens_others_only_their_own(
    ctx: AppContext, client: TestClient, role: Role | None
) -> None:
    for owner in ("admin", "operator", "viewer"):
        _seed_token(ctx, owner)
    response = client.get("/api/v1/tokens", auth=basic(role))
    if role is None:
        assert response.status_code == 401
        return
    owners = sorted(item["username"] for item in response.json()["items"])
    expected = ["admin", "operator", "viewer"] if role is Role.ADMIN else [role.value]
    assert owners == expected
    assert all(
        "secret" not in item and "token_hash" not in item for item in response.json()["items"]
    )


def test_list_is_newest_first_and_shows_status(ctx: AppContext, client: TestClient) -> None:
    with ctx.session() as s:
        user = user_service.get_user_by_name(s, "viewer")
        create_api_token(s, user, "old", expires_at=utcnow() - timedelta(days=1))
        _secret, revoked = create_api_token(s, user, "gone")
        revoked.revoked_at = utcnow()
        create_api_token(s, user, "new")
    items = client.get("/api/v1/tokens", auth=basic(Role.VIEWER)).json()["items"]
    assert [(i["name"], i["status"]) for i in items] == [
        ("new", "active"),
        ("gone", "revoked"),
        ("old", "expired"),
    ]


@pytest.mark.parametrize(
    ("role", "owner", "status"),
    [
        (Role.ADMIN, "viewer", 200),
        (Role.ADMIN, "admin", 200),
        (Role.OPERATOR, "operator", 200),
        (Role.OPERATOR, "viewer", 404),
        (Role.VIEWER, "viewer", 200),
        (Role.VIEWER, "admin", 404),
        (None, "viewer", 401),
    ],
)
def test_owner_or_admin_revokes(
    ctx: AppContext, client: TestClient, role: Role | None, owner: str, status: int
) -> None:
    with ctx.session() as s:
        user = user_service.get_user_by_name(s, owner)
        secret, row = create_api_token(s, user, "to-revoke")
        token_id = row.id
    response = client.post(f"/api/v1/tokens/{token_id}/revoke", auth=basic(role))
    assert response.status_code == status
    works = client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    if status == 200:
        assert response.json()["status"] == "revoked"
        assert works.status_code == 401
    else:
        assert works.status_code == 200


def test_revoking_twice_is_a_no_op_audited_once(ctx: AppContext, client: TestClient) -> None:
    token_id = _create(client, Role.OPERATOR)["id"]
    first = client.post(f"/api/v1/tokens/{token_id}/revoke", auth=basic(Role.OPERATOR))
    second = client.post(f"/api/v1/tokens/{token_id}/revoke", auth=basic(Role.OPERATOR))
    assert first.json()["revoked_at"] == second.json()["revoked_at"] is not None
    with ctx.session() as s:
        entries = s.query(AuditEntry).filter_by(action="revoke").all()
        assert [(e.actor, e.source_ip, e.object_id) for e in entries] == [
            ("operator", "testclient", str(token_id))
        ]
        assert entries[0].changes is not None
        assert entries[0].changes["owner"] == "operator"


@pytest.mark.parametrize(
    ("token_id", "status"), [("0", 422), ("x", 422), ("9" * 25, 422), ("424242", 404)]
)
def test_bad_or_unknown_token_ids(client: TestClient, token_id: str, status: int) -> None:
    response = client.post(f"/api/v1/tokens/{token_id}/revoke", auth=basic(Role.ADMIN))
    assert response.status_code == status
