"""``/api/v1/users``: admin-only account management, every change audited."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mainspring.api.app import create_app
from mainspring.context import AppContext
from mainspring.core.states import Role
from mainspring.db.models import ApiToken, AuditEntry, User
from mainspring.errors import ConflictError
from mainspring.services import users as user_service
from mainspring.services.auth import create_api_token
from mainspring.services.users import create_user
from mainspring.settings import Settings

PASSWORD = "correct-horse-1"
ROLES: list[Role | None] = [Role.ADMIN, Role.OPERATOR, Role.VIEWER, None]
DENIED = {Role.OPERATOR: 403, Role.VIEWER: 403, None: 401}


pytestmark = pytest.mark.usefixtures("fast_argon2")


def _user_id(ctx: AppContext, username: str) -> int:
    with ctx.session() as s:
        return s.query(User).filter_by(username=username).one().id


def _audit(ctx: AppContext, action: str) -> list[AuditEntry]:
    with ctx.session() as s:
        rows = s.query(AuditEntry).filter_by(object_type="user", action=action).all()
        s.expunge_all()
        return rows


@pytest.mark.parametrize("role", ROLES)
def test_only_admins_list_users(client: TestClient, auth: dict, role: Role | None) -> None:
    response = client.get("/api/v1/users", headers=auth[role])
    if role is Role.ADMIN:
        assert response.status_code == 200
        items = response.json()["items"]
        assert [u["username"] for u in items] == ["admin", "operator", "viewer"]
        assert all("password" not in key for u in items for key in u)
        assert items[0]["role"] == "admin"
        assert items[0]["active"] is True
    else:
        assert response.status_code == DENIED[role]


@pytest.mark.parametrize("role", ROLES)
def test_only_admins_create_users_and_creation_is_audited(
    ctx: AppContext, client: TestClient, auth: dict, role: Role | None
) -> None:
    body = {"username": "carol", "password": "s3cret-pass", "role": "operator", "language": "de"}
    response = client.post("/api/v1/users", json=body, headers=auth[role])
    with ctx.session() as s:
        created = s.query(User).filter_by(username="carol").one_or_none()
    if role is not Role.ADMIN:
        assert response.status_code == DENIED[role]
        assert created is None
        return
    assert response.status_code == 201
    assert response.json()["username"] == "carol"
    assert response.json()["language"] == "de"
    assert created is not None
    assert created.password_hash.startswith("$argon2id$")
    [entry] = _audit(ctx, "create")
    assert (entry.actor, entry.source_ip, entry.object_id) == (
        "admin",
        "testclient",
        str(created.id),
    )
    assert entry.changes is not None
    assert entry.changes["after"]["role"] == "operator"
    assert "s3cret-pass" not in str(entry.changes)


def test_created_user_can_log_in_with_basic(client: TestClient, auth: dict) -> None:
    body = {"username": "carol", "password": "s3cret-pass", "role": "viewer"}
    client.post("/api/v1/users", json=body, headers=auth[Role.ADMIN])
    me = client.get("/api/v1/me", auth=("carol", "s3cret-pass"))
    assert me.status_code == 200
    assert me.json()["auth_method"] == "basic"


@pytest.mark.parametrize("role", ROLES)
def test_only_admins_read_one_user(
    ctx: AppContext, client: TestClient, auth: dict, role: Role | None
) -> None:
    user_id = _user_id(ctx, "viewer")
    response = client.get(f"/api/v1/users/{user_id}", headers=auth[role])
    if role is Role.ADMIN:
        assert response.status_code == 200
        assert response.json()["username"] == "viewer"
    else:
        assert response.status_code == DENIED[role]


@pytest.mark.parametrize("role", ROLES)
def test_only_admins_update_users_and_changes_are_audited(
    ctx: AppContext, client: TestClient, auth: dict, role: Role | None
) -> None:
    user_id = _user_id(ctx, "viewer")
    body = {"role": "operator", "timezone": "Europe/Paris", "password": "new-password-1"}
    response = client.patch(f"/api/v1/users/{user_id}", json=body, headers=auth[role])
    if role is not Role.ADMIN:
        assert response.status_code == DENIED[role]
        assert client.get("/api/v1/me", auth=("viewer", PASSWORD)).json()["role"] == "viewer"
        return
    assert response.status_code == 200
    assert response.json()["role"] == "operator"
    assert response.json()["timezone"] == "Europe/Paris"
    assert client.get("/api/v1/me", auth=("viewer", PASSWORD)).status_code == 401
    assert client.get("/api/v1/me", auth=("viewer", "new-password-1")).status_code == 200
    [entry] = _audit(ctx, "update")
    assert entry.changes == {
        "v": 1,
        "before": {"role": "viewer", "timezone": None, "password": "***"},
        "after": {"role": "operator", "timezone": "Europe/Paris", "password": "***"},
    }


def test_update_changes_only_sent_fields_and_null_clears(
    ctx: AppContext, client: TestClient, auth: dict
) -> None:
    user_id = _user_id(ctx, "viewer")
    url = f"/api/v1/users/{user_id}"
    client.patch(url, json={"language": "fr", "timezone": "UTC"}, headers=auth[Role.ADMIN])
    response = client.patch(url, json={"language": None}, headers=auth[Role.ADMIN])
    assert response.json()["language"] is None
    assert response.json()["timezone"] == "UTC"
    assert response.json()["role"] == "viewer"


def test_empty_update_changes_nothing_and_audits_nothing(
    ctx: AppContext, client: TestClient, auth: dict
) -> None:
    user_id = _user_id(ctx, "viewer")
    response = client.patch(f"/api/v1/users/{user_id}", json={}, headers=auth[Role.ADMIN])
    assert response.status_code == 200
    assert _audit(ctx, "update") == []


@pytest.mark.parametrize("role", ROLES)
def test_only_admins_delete_users_and_their_tokens_go_too(
    ctx: AppContext, client: TestClient, auth: dict, role: Role | None
) -> None:
    user_id = _user_id(ctx, "viewer")
    response = client.delete(f"/api/v1/users/{user_id}", headers=auth[role])
    with ctx.session() as s:
        remaining = s.query(User).filter_by(username="viewer").count()
        tokens = s.query(ApiToken).filter_by(user_id=user_id).count()
    if role is not Role.ADMIN:
        assert response.status_code == DENIED[role]
        assert remaining == 1
        return
    assert response.status_code == 204
    assert (remaining, tokens) == (0, 0)
    assert client.get("/api/v1/me", headers=auth[Role.VIEWER]).status_code == 401
    [entry] = _audit(ctx, "delete")
    assert entry.changes is not None
    assert entry.changes["before"]["username"] == "viewer"


def test_deactivated_user_is_locked_out_everywhere(
    ctx: AppContext, client: TestClient, auth: dict
) -> None:
    user_id = _user_id(ctx, "operator")
    url = f"/api/v1/users/{user_id}"
    assert client.patch(url, json={"active": False}, headers=auth[Role.ADMIN]).status_code == 200
    assert client.get("/api/v1/me", headers=auth[Role.OPERATOR]).status_code == 401
    assert client.get("/api/v1/me", auth=("operator", PASSWORD)).status_code == 401


def test_admin_cannot_delete_or_deactivate_themselves(
    ctx: AppContext, client: TestClient, auth: dict
) -> None:
    url = f"/api/v1/users/{_user_id(ctx, 'admin')}"
    deleted = client.delete(url, headers=auth[Role.ADMIN])
    deactivated = client.patch(url, json={"active": False}, headers=auth[Role.ADMIN])
    assert deleted.status_code == 409
    assert "your own account" in deleted.json()["detail"]
    assert deactivated.status_code == 409


def test_last_active_admin_cannot_be_demoted(
    ctx: AppContext, client: TestClient, auth: dict
) -> None:
    url = f"/api/v1/users/{_user_id(ctx, 'admin')}"
    response = client.patch(url, json={"role": "viewer"}, headers=auth[Role.ADMIN])
    assert response.status_code == 409
    assert "last active admin" in response.json()["detail"]
    assert client.get(url, headers=auth[Role.ADMIN]).json()["role"] == "admin"


def test_an_admin_may_step_down_when_another_admin_remains(
    ctx: AppContext, client: TestClient, auth: dict
) -> None:
    operator = f"/api/v1/users/{_user_id(ctx, 'operator')}"
    client.patch(operator, json={"role": "admin"}, headers=auth[Role.ADMIN])
    me = f"/api/v1/users/{_user_id(ctx, 'admin')}"
    response = client.patch(me, json={"role": "operator"}, headers=auth[Role.ADMIN])
    assert response.status_code == 200
    # The token is still there but its owner is no admin any more.
    assert client.get("/api/v1/users", headers=auth[Role.ADMIN]).status_code == 403


@pytest.mark.usefixtures("tokens")
def test_second_admin_cannot_be_removed_once_the_first_is_inactive(ctx: AppContext) -> None:
    with ctx.session() as s:
        first = user_service.get_user_by_name(s, "admin")
        second = create_user(s, "admin2", PASSWORD, Role.ADMIN)
        first.is_active = False
        s.flush()
        actor = user_service.SYSTEM_ACTOR
        with pytest.raises(ConflictError, match="last active admin"):
            user_service.delete_user(s, second, actor)
        with pytest.raises(ConflictError, match="last active admin"):
            user_service.update_user(s, second, user_service.UserUpdate(is_active=False), actor)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": "x", "password": "short", "role": "viewer"}, "password"),
        ({"username": "x", "password": "long-enough", "role": "root"}, "role"),
        ({"username": "", "password": "long-enough", "role": "viewer"}, "username"),
        ({"username": "a:b", "password": "long-enough", "role": "viewer"}, "username"),
        ({"username": "a b", "password": "long-enough", "role": "viewer"}, "username"),
        ({"username": "a\u0000b", "password": "long-enough", "role": "viewer"}, "username"),
        ({"username": "x" * 151, "password": "long-enough", "role": "viewer"}, "username"),
        ({"username": "x", "password": "long-enough", "role": "viewer", "tz": "x"}, "tz"),
        (
            {"username": "x", "password": "long-enough", "role": "viewer", "timezone": "Mars/X"},
            "timezone",
        ),
        (
            {"username": "x", "password": "long-enough", "role": "viewer", "language": "1!"},
            "language",
        ),
        ({"password": "long-enough", "role": "viewer"}, "username"),
    ],
)
def test_invalid_user_input_is_a_422_naming_the_field(
    client: TestClient, auth: dict, body: dict, field: str
) -> None:
    response = client.post("/api/v1/users", json=body, headers=auth[Role.ADMIN])
    assert response.status_code == 422
    assert field in response.text


@pytest.mark.parametrize(
    "raw",
    [
        b'{"username": "a\\ud800", "password": "long-enough", "role": "viewer"}',
        b'{"username": ',
        b"[]",
        b'{"username": 5, "password": "long-enough", "role": "viewer"}',
    ],
)
def test_malformed_json_is_a_4xx_not_a_500(client: TestClient, auth: dict, raw: bytes) -> None:
    headers = {**auth[Role.ADMIN], "Content-Type": "application/json"}
    response = client.post("/api/v1/users", content=raw, headers=headers)
    assert 400 <= response.status_code < 500


def test_duplicate_username_is_409(client: TestClient, auth: dict) -> None:
    body = {"username": "viewer", "password": "long-enough", "role": "viewer"}
    response = client.post("/api/v1/users", json=body, headers=auth[Role.ADMIN])
    assert response.status_code == 409
    assert "already exists" in response.json()["detail"]


@pytest.mark.parametrize(
    ("user_id", "status"), [("0", 422), ("abc", 422), ("9" * 30, 422), ("999999", 404)]
)
def test_bad_or_unknown_user_ids(client: TestClient, auth: dict, user_id: str, status: int) -> None:
    for method in ("GET", "PATCH", "DELETE"):
        kwargs = {"json": {}} if method == "PATCH" else {}
        response = client.request(
            method, f"/api/v1/users/{user_id}", headers=auth[Role.ADMIN], **kwargs
        )
        assert response.status_code == status, method


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"role": "god"}, "role"),
        ({"active": "maybe"}, "active"),
        ({"password": "short"}, "password"),
        ({"timezone": "Nowhere/Town"}, "timezone"),
        ({"username": "renamed"}, "username"),
    ],
)
def test_invalid_update_is_a_422_naming_the_field(
    ctx: AppContext, client: TestClient, auth: dict, body: dict, field: str
) -> None:
    url = f"/api/v1/users/{_user_id(ctx, 'viewer')}"
    response = client.patch(url, json=body, headers=auth[Role.ADMIN])
    assert response.status_code == 422
    assert field in response.text


def test_admin_role_limited_by_a_viewer_token_cannot_manage_users(
    ctx: AppContext, client: TestClient
) -> None:
    with ctx.session() as s:
        admin = user_service.get_user_by_name(s, "admin")
        secret, _ = create_api_token(s, admin, "read-only", role=Role.VIEWER)
    response = client.get("/api/v1/users", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 403


def test_anonymous_bad_body_is_still_401(client: TestClient) -> None:
    assert client.post("/api/v1/users", json={"role": "nope"}).status_code == 401


# --- PostgreSQL: text it refuses (NUL) and the admin-row lock ------------------------------


@pytest.fixture
def pg_ctx(postgres_url: str, data_dir: Path) -> Iterator[AppContext]:
    settings = Settings(data_dir=data_dir, database_url=postgres_url, secret_key="k")
    context = AppContext.open(settings)
    yield context
    context.close()


@pytest.mark.postgres
def test_users_api_on_postgres_never_500s_on_nul_bytes(pg_ctx: AppContext) -> None:
    with pg_ctx.session() as s:
        create_user(s, "admin", PASSWORD, Role.ADMIN)
    with TestClient(create_app(pg_ctx)) as client:
        admin = ("admin", PASSWORD)
        assert client.get("/api/v1/me", auth=("ad\x00min", PASSWORD)).status_code == 401
        body = {"username": "a\x00b", "password": "long-enough", "role": "viewer"}
        assert client.post("/api/v1/users", json=body, auth=admin).status_code == 422
        token = {"name": "n\x00", "expires_in_days": 1}
        assert client.post("/api/v1/tokens", json=token, auth=admin).status_code == 422
        audit = client.get("/api/v1/audit", params={"actor": "a\x00"}, auth=admin)
        assert audit.status_code == 422
        body = {"username": "eve", "password": "long-enough", "role": "admin"}
        eve = client.post("/api/v1/users", json=body, auth=admin).json()
        demote = client.patch(f"/api/v1/users/{eve['id']}", json={"role": "viewer"}, auth=admin)
        assert demote.json()["role"] == "viewer"
        me = client.get("/api/v1/me", auth=admin).json()
        last = client.patch(f"/api/v1/users/{me['id']}", json={"role": "viewer"}, auth=admin)
        assert last.status_code == 409


def test_openapi_documents_users_tokens_and_audit(client: TestClient) -> None:
    schema = client.get("/api/v1/openapi.json").json()
    for path in (
        "/api/v1/users",
        "/api/v1/users/{user_id}",
        "/api/v1/me",
        "/api/v1/me/password",
        "/api/v1/tokens",
        "/api/v1/tokens/{token_id}/revoke",
        "/api/v1/audit",
    ):
        for operation in schema["paths"][path].values():
            assert "401" in operation["responses"], path
    models = schema["components"]["schemas"]
    assert "secret" in models["TokenCreated"]["properties"]
    assert "secret" not in models["TokenOut"]["properties"]
    assert not any("hash" in field for field in models["UserOut"]["properties"])
