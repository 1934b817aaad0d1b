"""The console's users and API tokens pages: admins only (no menu link, 403 and refused POSTs
for the others), creating users and tokens, changing roles, deactivating and deleting through
``services.users``/``services.tokens`` (same rules, audited), a token's secret shown once."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from mainspring.context import AppContext
from mainspring.core.states import Role
from mainspring.db.models import ApiToken, AuditEntry, User
from mainspring.services.users import get_user_by_name
from tests.integration.test_console_jobs import ROLES, XSS, Console, csrf_of
from tests.integration.test_console_jobs import console as console  # the fixture


def post(client: TestClient, url: str, data: dict[str, str], page: str = "/dashboard") -> object:
    token = csrf_of(client.get(page).text)
    return client.post(url, data={**data, "csrf_token": token}, follow_redirects=False)


def user_row(ctx: AppContext, name: str) -> User | None:
    with ctx.session() as s:
        user = s.scalar(select(User).where(User.username == name))
        if user is not None:
            s.expunge(user)
        return user


def user_id(ctx: AppContext, name: str) -> int:
    with ctx.session() as s:
        return get_user_by_name(s, name).id


def audited(ctx: AppContext, object_type: str) -> list[tuple[str, str]]:
    with ctx.session() as s:
        rows = s.scalars(
            select(AuditEntry).where(AuditEntry.object_type == object_type).order_by(AuditEntry.id)
        )
        return [(e.action, e.actor) for e in rows]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("page", ["/users", "/tokens"])
def test_users_and_tokens_pages_are_for_admins(
    console: Console, role: Role | None, page: str
) -> None:
    response = console(role).get(page, follow_redirects=False)
    if role is None:
        assert response.status_code == 303
        assert response.headers["location"] == f"/login?next={page}"
    elif role == Role.ADMIN:
        assert response.status_code == 200
        assert "operator" in response.text  # the users, or the tokens' owners
    else:
        assert response.status_code == 403
        assert "This needs the admin role" in response.text


@pytest.mark.parametrize("role", [Role.OPERATOR, Role.VIEWER])
def test_menu_links_and_changes_refused_to_non_admins(
    ctx: AppContext, console: Console, role: Role
) -> None:
    client = console(role)
    page = client.get("/jobs").text
    assert 'href="/users"' not in page
    assert 'href="/settings"' not in page
    viewer_id = user_id(ctx, "viewer")
    attempts = [
        ("/users", {"username": "mallory", "password": "long-enough-1", "role": "admin"}),
        (f"/users/{viewer_id}/role", {"role": "admin"}),
        (f"/users/{viewer_id}/deactivate", {}),
        (f"/users/{viewer_id}/delete", {}),
        ("/tokens", {"username": role.value, "name": "sneaky", "role": "", "days": ""}),
    ]
    for url, data in attempts:
        assert post(client, url, data).status_code == 403, url
    assert user_row(ctx, "mallory") is None
    viewer = user_row(ctx, "viewer")
    assert viewer is not None
    assert viewer.role == "viewer"
    assert viewer.is_active
    assert audited(ctx, "user") == []


def test_admin_sees_the_menu_links(console: Console) -> None:
    page = console(Role.ADMIN).get("/jobs").text
    assert 'href="/users"' in page
    assert 'href="/settings"' in page


def test_forged_post_without_csrf_is_refused(ctx: AppContext, console: Console) -> None:
    client = console(Role.ADMIN)
    data = {"username": "forged", "password": "long-enough-1", "role": "admin"}
    response = client.post("/users", data=data, follow_redirects=False)
    assert response.status_code == 403
    forged = client.post("/users", data={**data, "csrf_token": "x" * 40}, follow_redirects=False)
    assert forged.status_code == 403
    assert user_row(ctx, "forged") is None


def test_admin_creates_a_user_who_can_log_in(ctx: AppContext, console: Console) -> None:
    client = console(Role.ADMIN)
    data = {"username": "carol", "password": "carol-password-1", "role": "operator"}
    response = post(client, "/users", data)
    assert response.status_code == 303
    page = client.get("/users").text
    assert "User carol created." in page
    assert "carol-password-1" not in page
    carol = user_row(ctx, "carol")
    assert carol is not None
    assert carol.role == "operator"
    assert carol.is_active
    assert ("create", "admin") in audited(ctx, "user")
    with TestClient(client.app) as other:
        token = csrf_of(other.get("/login").text)
        form = {"username": "carol", "password": "carol-password-1", "csrf_token": token}
        assert other.post("/login", data=form, follow_redirects=False).status_code == 303


def test_refused_user_is_shown_with_its_input(ctx: AppContext, console: Console) -> None:
    client = console(Role.ADMIN)
    short = post(client, "/users", {"username": "dave", "password": "short", "role": "viewer"})
    assert short.status_code == 422
    assert "must be at least 8 characters" in short.text
    assert 'value="dave"' in short.text
    taken = post(client, "/users", {"username": "viewer", "password": "long-enough-1"} | {
        "role": "viewer"
    })  # fmt: skip
    assert taken.status_code == 409
    assert "already exists" in taken.text
    bad_role = post(client, "/users", {"username": "erin", "password": "long-enough-1",
                                       "role": "root"})  # fmt: skip
    assert bad_role.status_code == 422
    assert user_row(ctx, "dave") is None
    assert user_row(ctx, "erin") is None


def test_names_are_shown_as_text(ctx: AppContext, console: Console) -> None:
    client = console(Role.ADMIN)
    post(client, "/users", {"username": XSS.replace(" ", ""), "password": "long-enough-1",
                            "role": "viewer"})  # fmt: skip
    page = client.get("/users").text
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_change_role_deactivate_reactivate_delete(ctx: AppContext, console: Console) -> None:
    client = console(Role.ADMIN)
    viewer_id = user_id(ctx, "viewer")
    assert post(client, f"/users/{viewer_id}/role", {"role": "operator"}).status_code == 303
    assert "Role of viewer changed." in client.get("/users").text
    assert user_row(ctx, "viewer").role == "operator"  # type: ignore[union-attr]
    post(client, f"/users/{viewer_id}/deactivate", {})
    assert user_row(ctx, "viewer").is_active is False  # type: ignore[union-attr]
    post(client, f"/users/{viewer_id}/activate", {})
    assert user_row(ctx, "viewer").is_active is True  # type: ignore[union-attr]
    confirm = client.get(f"/users/{viewer_id}/delete")
    assert "Delete user viewer?" in confirm.text
    assert post(client, f"/users/{viewer_id}/delete", {}).status_code == 303
    assert user_row(ctx, "viewer") is None
    with ctx.session() as s:
        assert s.scalar(select(ApiToken).where(ApiToken.user_id == viewer_id)) is None
    actions = [action for action, _actor in audited(ctx, "user")]
    assert actions == ["update", "update", "update", "delete"]


def test_the_service_rules_hold(ctx: AppContext, console: Console) -> None:
    client = console(Role.ADMIN)
    admin_id = user_id(ctx, "admin")
    post(client, f"/users/{admin_id}/deactivate", {})
    assert "you cannot deactivate your own account" in client.get("/users").text
    post(client, f"/users/{admin_id}/role", {"role": "viewer"})
    assert "it is the last active admin" in client.get("/users").text
    post(client, f"/users/{admin_id}/delete", {})
    assert "you cannot delete your own account" in client.get("/users").text
    admin = user_row(ctx, "admin")
    assert admin is not None
    assert admin.role == "admin"
    assert admin.is_active


def test_token_secret_is_shown_once_and_works(ctx: AppContext, console: Console) -> None:
    client = console(Role.ADMIN)
    data = {"username": "operator", "name": "ci deploy", "role": "viewer", "days": "30"}
    created = post(client, "/tokens", data, page="/tokens")
    assert created.status_code == 201
    assert created.headers["cache-control"] == "no-store"
    match = re.search(r'<pre class="token-secret"><code>(ms_[^<]+)</code>', created.text)
    assert match is not None
    secret = match.group(1)
    listing = client.get("/tokens").text
    assert secret not in listing
    assert "ci deploy" in listing
    with ctx.session() as s:
        token = s.scalar(select(ApiToken).where(ApiToken.name == "ci deploy"))
        assert token is not None
        assert token.role == "viewer"
        assert token.expires_at is not None
        assert token.token_hash not in listing
        assert token.prefix in listing
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert me.json()["username"] == "operator"
    assert me.json()["effective_role"] == "viewer"
    assert ("create", "admin") in audited(ctx, "token")


def test_refused_token_form_is_shown_with_its_messages(console: Console) -> None:
    client = console(Role.ADMIN)
    nameless = post(client, "/tokens", {"username": "viewer", "name": "", "role": "",
                                        "days": ""}, page="/tokens")  # fmt: skip
    assert nameless.status_code == 422
    days = post(client, "/tokens", {"username": "viewer", "name": "y", "role": "",
                                    "days": "soon"}, page="/tokens")  # fmt: skip
    assert days.status_code == 422
    assert "must be a whole number of days" in days.text
    nobody = post(client, "/tokens", {"username": "nobody", "name": "z", "role": "",
                                      "days": ""}, page="/tokens")  # fmt: skip
    assert nobody.status_code == 422
    assert "no user has this name" in nobody.text


def test_revoke_token(ctx: AppContext, console: Console, tokens: dict[Role, str]) -> None:
    client = console(Role.ADMIN)
    with ctx.session() as s:
        token_id = s.scalar(select(ApiToken.id).join(User).where(User.username == "operator"))
    assert post(client, f"/tokens/{token_id}/revoke", {}, page="/tokens").status_code == 303
    page = client.get("/tokens").text
    assert "revoked." in page
    refused = client.get("/api/v1/me", headers={"Authorization": f"Bearer {tokens[Role.OPERATOR]}"})
    assert refused.status_code == 401
    assert ("revoke", "admin") in audited(ctx, "token")


def test_users_page_in_chinese(console: Console) -> None:
    page = console(Role.ADMIN).get("/users", headers={"Accept-Language": "zh-CN"}).text
    assert "<h1>用户</h1>" in page
