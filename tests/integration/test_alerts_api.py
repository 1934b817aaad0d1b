"""``/api/v1/alerts``: channels (admin), rules (operator), alerts (anyone logged in)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from mainspring.context import AppContext
from mainspring.core.states import Role
from mainspring.db.models import AlertChannel, AlertDelivery, AuditEntry
from mainspring.services.clock import utcnow
from tests.integration.alert_receivers import Webhook, webhook_server

ROLES: list[Role | None] = [Role.ADMIN, Role.OPERATOR, Role.VIEWER, None]
API = "/api/v1/alerts"


@pytest.fixture
def hook() -> Iterator[Webhook]:
    with webhook_server() as server:
        yield server


def _channel(client: TestClient, auth: dict, url: str, name: str = "ops-hook") -> dict[str, Any]:
    body = {
        "name": name,
        "kind": "webhook",
        "config": {"url": url, "secret": "s3cret-hmac", "headers": {"Authorization": "Bearer x1"}},
    }
    response = client.post(f"{API}/channels", json=body, headers=auth[Role.ADMIN])
    assert response.status_code == 201, response.text
    return dict(response.json())


def _audit(ctx: AppContext, object_type: str) -> list[AuditEntry]:
    with ctx.session() as s:
        rows = list(s.scalars(select(AuditEntry).where(AuditEntry.object_type == object_type)))
        s.expunge_all()
        return rows


@pytest.mark.parametrize("role", ROLES)
def test_only_admins_create_channels_and_secrets_are_masked(
    ctx: AppContext, client: TestClient, auth: dict, role: Role | None, hook: Webhook
) -> None:
    body = {"name": "h", "kind": "webhook", "config": {"url": hook.url, "secret": "s3cret-hmac"}}
    response = client.post(f"{API}/channels", json=body, headers=auth[role])
    if role is not Role.ADMIN:
        assert response.status_code == {None: 401}.get(role, 403)
        assert _audit(ctx, "alert_channel") == []
        return
    assert response.status_code == 201
    assert response.json()["config"]["secret"] == "***"
    [entry] = _audit(ctx, "alert_channel")
    assert "s3cret-hmac" not in str(entry.changes)
    with ctx.session() as s:
        assert s.scalars(select(AlertChannel.config)).one()["secret"] == "s3cret-hmac"


@pytest.mark.parametrize("role", ROLES)
def test_anyone_logged_in_lists_channels_masked(
    client: TestClient, auth: dict, role: Role | None, hook: Webhook
) -> None:
    _channel(client, auth, hook.url)
    response = client.get(f"{API}/channels", headers=auth[role])
    if role is None:
        assert response.status_code == 401
        return
    assert response.status_code == 200
    [item] = response.json()["items"]
    assert item["config"]["secret"] == "***"
    assert item["config"]["headers"]["Authorization"] == "***"
    assert "s3cret-hmac" not in response.text


def test_patch_with_masked_secret_keeps_it(
    ctx: AppContext, client: TestClient, auth: dict, hook: Webhook
) -> None:
    created = _channel(client, auth, hook.url)
    config = {**created["config"], "timeout_s": 3}
    response = client.patch(
        f"{API}/channels/{created['id']}", json={"config": config}, headers=auth[Role.ADMIN]
    )
    assert response.status_code == 200
    with ctx.session() as s:
        stored = s.scalars(select(AlertChannel.config)).one()
    assert (stored["secret"], stored["timeout_s"]) == ("s3cret-hmac", 3)
    assert stored["headers"]["Authorization"] == "Bearer x1"


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"url": "not a url"}, "config.url"),
        ({"url": "http://h", "surprise": 1}, "config.surprise"),
        ({"url": "http://h", "timeout_s": 0}, "config.timeout_s"),
    ],
)
def test_bad_channel_config_is_a_422_naming_the_field(
    client: TestClient, auth: dict, config: dict[str, Any], field: str
) -> None:
    body = {"name": "bad", "kind": "webhook", "config": config}
    response = client.post(f"{API}/channels", json=body, headers=auth[Role.ADMIN])
    assert response.status_code == 422
    assert response.json()["detail"]["field"] == field


def test_duplicate_channel_name_is_a_409(client: TestClient, auth: dict, hook: Webhook) -> None:
    _channel(client, auth, hook.url)
    body = {"name": "ops-hook", "kind": "webhook", "config": {"url": hook.url}}
    assert client.post(f"{API}/channels", json=body, headers=auth[Role.ADMIN]).status_code == 409


@pytest.mark.parametrize("role", ROLES)
def test_only_admins_send_a_test_alert(
    ctx: AppContext, client: TestClient, auth: dict, role: Role | None, hook: Webhook
) -> None:
    created = _channel(client, auth, hook.url)
    response = client.post(f"{API}/channels/{created['id']}/test", headers=auth[role])
    if role is not Role.ADMIN:
        assert response.status_code == {None: 401}.get(role, 403)
        assert hook.received == []
        return
    assert response.json() == {"ok": True, "error": None}
    [body] = hook.bodies()
    assert body["kind"] == "test"
    assert hook.received[0][0]["Authorization"] == "Bearer x1"
    assert [e.action for e in _audit(ctx, "alert_channel")] == ["create", "test"]


def test_test_alert_to_a_dead_endpoint_reports_the_error(client: TestClient, auth: dict) -> None:
    with webhook_server() as gone:
        url = gone.url
    created = _channel(client, auth, url)
    response = client.post(f"{API}/channels/{created['id']}/test", headers=auth[Role.ADMIN])
    assert response.status_code == 200
    assert response.json()["ok"] is False
    assert "webhook 127.0.0.1" in response.json()["error"]


@pytest.mark.parametrize("role", ROLES)
def test_operators_manage_rules(
    ctx: AppContext, client: TestClient, auth: dict, role: Role | None, hook: Webhook
) -> None:
    channel = _channel(client, auth, hook.url)
    body = {"name": "failures", "kind": "run_failed", "channel_ids": [channel["id"]]}
    response = client.post(f"{API}/rules", json=body, headers=auth[role])
    if role not in (Role.ADMIN, Role.OPERATOR):
        assert response.status_code == {None: 401}.get(role, 403)
        return
    assert response.status_code == 201
    rule = response.json()
    assert rule["params"]["grace_s"] == 60
    patched = client.patch(f"{API}/rules/{rule['id']}", json={"cooldown_s": 60}, headers=auth[role])
    assert patched.json()["cooldown_s"] == 60
    gone = client.delete(f"{API}/rules/{rule['id']}", headers=auth[role])
    assert gone.status_code == 204
    assert [e.action for e in _audit(ctx, "alert_rule")] == ["create", "update", "delete"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "worker_offline", "tag": "db"}, "job_id"),
        ({"kind": "run_failed", "channel_ids": [999]}, "channel_ids"),
        ({"kind": "run_failed", "job_id": 999}, "job_id"),
        ({"kind": "fire_missed", "params": {"grace_s": -1}}, "params.grace_s"),
    ],
)
def test_bad_rule_is_a_422_naming_the_field(
    client: TestClient, auth: dict, body: dict[str, Any], field: str
) -> None:
    full = {"name": "r", "channel_ids": [], **body}
    response = client.post(f"{API}/rules", json=full, headers=auth[Role.OPERATOR])
    assert response.status_code == 422
    assert response.json()["detail"]["field"] == field


def test_unknown_rule_kind_is_a_422(client: TestClient, auth: dict) -> None:
    body = {"name": "r", "kind": "sunspots", "channel_ids": []}
    response = client.post(f"{API}/rules", json=body, headers=auth[Role.OPERATOR])
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "kind"]


@pytest.mark.parametrize("role", ROLES)
def test_alerts_list_shows_deliveries(
    ctx: AppContext, client: TestClient, auth: dict, role: Role | None, hook: Webhook
) -> None:
    from mainspring.alerts.delivery import raise_alert
    from mainspring.alerts.store import get_rule

    channel = _channel(client, auth, hook.url)
    body = {"name": "failures", "kind": "run_failed", "channel_ids": [channel["id"]]}
    rule_id = client.post(f"{API}/rules", json=body, headers=auth[Role.ADMIN]).json()["id"]
    with ctx.session() as s:
        payload = {"subject": "run of x ended FAILURE", "link": "/runs/r1"}
        raise_alert(s, get_rule(s, rule_id), "job:1", payload, utcnow(), run_id="r1")
    response = client.get(API, headers=auth[role])
    if role is None:
        assert response.status_code == 401
        return
    [item] = response.json()["items"]
    assert item["subject"] == "run of x ended FAILURE"
    assert item["payload"]["link"] == "/runs/r1"
    assert item["deliveries"][0]["state"] == "pending"
    with ctx.session() as s:
        assert s.scalars(select(AlertDelivery.channel_name)).one() == "ops-hook"


def test_deleting_a_channel_removes_it_from_rules(
    client: TestClient, auth: dict, hook: Webhook
) -> None:
    channel = _channel(client, auth, hook.url)
    body = {"name": "failures", "kind": "run_failed", "channel_ids": [channel["id"]]}
    rule_id = client.post(f"{API}/rules", json=body, headers=auth[Role.ADMIN]).json()["id"]
    deleted = client.delete(f"{API}/channels/{channel['id']}", headers=auth[Role.ADMIN])
    assert deleted.status_code == 204
    rule = client.get(f"{API}/rules/{rule_id}", headers=auth[Role.VIEWER]).json()
    assert rule["channel_ids"] == []
    missing = client.get(f"{API}/channels/{channel['id']}", headers=auth[Role.VIEWER])
    assert missing.status_code == 404


def test_command_channels_are_refused_unless_enabled(client: TestClient, auth: dict) -> None:
    body = {"name": "hook", "kind": "command", "config": {"argv": ["/bin/true"]}}
    answer = client.post("/api/v1/alerts/channels", json=body, headers=auth[Role.ADMIN])
    assert answer.status_code == 422
    assert answer.json()["detail"]["field"] == "kind"
    assert "MAINSPRING_ALERTS_ALLOW_COMMANDS" in answer.json()["detail"]["message"]
