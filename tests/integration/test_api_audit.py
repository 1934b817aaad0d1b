"""``/api/v1/audit`` (admin), the ``AuditActor`` helper for other routers, and masking."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient

from mainspring.api.app import create_app
from mainspring.api.audit import AuditActor
from mainspring.api.deps import Db
from mainspring.context import AppContext
from mainspring.core.states import Role
from mainspring.db.models import AuditEntry
from mainspring.services import users as user_service
from mainspring.services.audit import MASK, diff, mask_secrets, record, record_as
from mainspring.services.users import create_user

PASSWORD = "correct-horse-1"
ROLES: list[Role | None] = [Role.ADMIN, Role.OPERATOR, Role.VIEWER, None]


@pytest.fixture(autouse=True)
def fast_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        user_service, "_hasher", PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
    )


def _add_probe_route(app: FastAPI) -> None:
    """A route as another engineer would write one: it audits through ``AuditActor``."""

    @app.post("/api/v1/probe-audit")
    def probe(db: Db, actor: AuditActor) -> dict[str, str]:
        record_as(db, actor, "poke", "probe", "p-1", diff({"n": 1}, {"n": 2}))
        return {"actor": actor.name}


@pytest.fixture
def client(ctx: AppContext) -> Iterator[TestClient]:
    with ctx.session() as s:
        for role in Role:
            create_user(s, role.value, PASSWORD, role)
    app = create_app(ctx)
    _add_probe_route(app)
    with TestClient(app) as client:
        yield client


def basic(role: Role | None) -> tuple[str, str] | None:
    return (role.value, PASSWORD) if role else None


def _seed(ctx: AppContext, count: int, object_type: str = "job", actor: str = "alice") -> None:
    with ctx.session() as s:
        for i in range(count):
            record(s, actor, "update", object_type, i, {"after": {"i": i}}, "10.0.0.9")


@pytest.mark.parametrize(
    ("role", "status"), [(Role.ADMIN, 200), (Role.OPERATOR, 403), (Role.VIEWER, 403), (None, 401)]
)
def test_only_admins_read_the_audit_log(
    ctx: AppContext, client: TestClient, role: Role | None, status: int
) -> None:
    _seed(ctx, 2)
    response = client.get("/api/v1/audit", auth=basic(role))
    assert response.status_code == status
    if status == 200:
        assert [e["object_id"] for e in response.json()["items"]] == ["1", "0"]


def test_user_and_token_changes_appear_newest_first_with_who_and_where(
    client: TestClient,
) -> None:
    admin = basic(Role.ADMIN)
    created = client.post(
        "/api/v1/users",
        json={"username": "dora", "password": "dora-password", "role": "viewer"},
        auth=admin,
    ).json()
    client.patch(f"/api/v1/users/{created['id']}", json={"role": "operator"}, auth=admin)
    token = client.post("/api/v1/tokens", json={"name": "ci"}, auth=admin).json()
    client.post(f"/api/v1/tokens/{token['id']}/revoke", auth=admin)
    items = client.get("/api/v1/audit", auth=admin).json()["items"]
    assert [(e["action"], e["object_type"]) for e in items] == [
        ("revoke", "token"),
        ("create", "token"),
        ("update", "user"),
        ("create", "user"),
    ]
    assert {(e["actor"], e["source_ip"]) for e in items} == {("admin", "testclient")}
    assert items[2]["changes"] == {
        "v": 1,
        "before": {"role": "viewer"},
        "after": {"role": "operator"},
    }
    assert "dora-password" not in str(items)
    assert token["secret"] not in str(items)


def test_filters_narrow_the_log(ctx: AppContext, client: TestClient) -> None:
    _seed(ctx, 3, object_type="job", actor="alice")
    _seed(ctx, 2, object_type="worker", actor="bob")
    admin = basic(Role.ADMIN)

    def ids(**params: str) -> list[tuple[str, str | None]]:
        items = client.get("/api/v1/audit", params=params, auth=admin).json()["items"]
        return [(e["object_type"], e["object_id"]) for e in items]

    assert ids(object_type="worker") == [("worker", "1"), ("worker", "0")]
    assert ids(object_type="job", object_id="2") == [("job", "2")]
    assert ids(actor="alice") == [("job", "2"), ("job", "1"), ("job", "0")]
    assert ids(actor="nobody") == []
    assert ids(action="update", object_type="worker", actor="bob") == [
        ("worker", "1"),
        ("worker", "0"),
    ]


def test_cursor_pages_through_every_entry_once(ctx: AppContext, client: TestClient) -> None:
    _seed(ctx, 7)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/audit", params=params, auth=basic(Role.ADMIN)).json()
        seen += [e["object_id"] for e in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [str(i) for i in range(6, -1, -1)]
    assert pages == 3


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"cursor": "abc"}, "cursor"),
        ({"cursor": "0"}, "cursor"),
        ({"cursor": "9" * 20}, "cursor"),
        ({"cursor": "-5"}, "cursor"),
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"object_type": "a\x00b"}, "object_type"),
        ({"actor": "x" * 201}, "actor"),
    ],
)
def test_bad_query_is_a_422_naming_the_parameter(
    client: TestClient, params: dict[str, str], field: str
) -> None:
    response = client.get("/api/v1/audit", params=params, auth=basic(Role.ADMIN))
    assert response.status_code == 422
    assert field in response.text


@pytest.mark.parametrize("role", ROLES)
def test_audit_actor_gives_any_router_the_callers_name_and_address(
    ctx: AppContext, client: TestClient, role: Role | None
) -> None:
    response = client.post("/api/v1/probe-audit", auth=basic(role))
    with ctx.session() as s:
        entries = s.query(AuditEntry).filter_by(object_type="probe").all()
        rows = [(e.actor, e.source_ip, e.action, e.object_id, e.changes) for e in entries]
    if role is None:
        assert response.status_code == 401
        assert rows == []
        return
    assert response.json() == {"actor": role.value}
    expected_changes = {"v": 1, "before": {"n": 1}, "after": {"n": 2}}
    assert rows == [(role.value, "testclient", "poke", "p-1", expected_changes)]


# --- masking and diffs (pure) -------------------------------------------------------------


def test_secret_fields_are_masked_at_any_depth() -> None:
    changes = {
        "before": {"password": "hunter22", "name": "x"},
        "after": {
            "new_password": "p",
            "token": "ms_abc",
            "token_hash": "deadbeef",
            "headers": [{"Authorization": "Bearer ms_abc", "Accept": "json"}],
            "SECRET_KEY": "k",
            "api-key": "k2",
        },
    }
    masked = mask_secrets(changes)
    assert masked == {
        "before": {"password": MASK, "name": "x"},
        "after": {
            "new_password": MASK,
            "token": MASK,
            "token_hash": MASK,
            "headers": [{"Authorization": MASK, "Accept": "json"}],
            "SECRET_KEY": MASK,
            "api-key": MASK,
        },
    }


@pytest.mark.parametrize("key", ["owner", "prefix", "role", "active", "hashtag", "name"])
def test_ordinary_fields_are_not_masked(key: str) -> None:
    assert mask_secrets({key: 3}) == {key: 3}


def test_record_never_stores_a_secret(ctx: AppContext) -> None:
    with ctx.session() as s:
        entry = record(s, "a", "update", "user", 1, {"after": {"password": "pw-123456"}}, None)
        assert entry.changes == {"v": 1, "after": {"password": MASK}}


def test_diff_keeps_only_changed_fields() -> None:
    before = {"role": "viewer", "active": True, "language": None}
    after = {"role": "admin", "active": True, "language": "de"}
    assert diff(before, after) == {
        "before": {"role": "viewer", "language": None},
        "after": {"role": "admin", "language": "de"},
    }
    assert diff({}, {"a": 1}) == {"before": {}, "after": {"a": 1}}
    assert diff({"a": 1}, {}) == {"before": {"a": 1}, "after": {}}
