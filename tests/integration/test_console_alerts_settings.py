"""The console's alerts page (rules and raised alerts with their deliveries for anyone logged
in; operators add and delete rules through ``alerts.store``, audited) and the settings page
(admins only, every setting listed, secrets and URL passwords masked)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from mainspring.alerts import store
from mainspring.alerts.config import ChannelKind, RuleKind
from mainspring.alerts.delivery import raise_alert
from mainspring.api.app import create_app
from mainspring.console.config import derived_settings, shown_settings
from mainspring.context import AppContext
from mainspring.core.states import Role
from mainspring.db.models import AlertRule, AuditEntry
from mainspring.services.audit import Actor
from mainspring.settings import Settings
from tests.integration.test_console_jobs import OPERATORS, ROLES, XSS, Console, csrf_of, login

BROKER = "redis://:broker-pass-9@127.0.0.1:6379/3"
DATABASE_PASSWORD = "db-pass-7"


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return Settings(
        data_dir=data_dir,
        secret_key="very-secret-key-1",
        broker_url=BROKER,
        admin_password="first-admin-pw",
        task_routes={"tasks.report": "reports"},
        timezone="Asia/Shanghai",
    )


@pytest.fixture
def console(ctx: AppContext, tokens: dict[Role, str]) -> Iterator[Console]:
    with ExitStack() as stack:

        def open_as(role: Role | None) -> TestClient:
            client = stack.enter_context(TestClient(create_app(ctx)))
            if role is not None:
                login(client, role.value)
            return client

        yield open_as


def add_rule_and_alert(ctx: AppContext) -> int:
    actor = Actor("alice")
    with ctx.session() as s:
        hook = store.create_channel(
            s, actor, "ops hook", ChannelKind.WEBHOOK,
            {"url": "https://hooks.example/x?access_token=tok-123", "secret": "hook-secret"},
        )  # fmt: skip
        rule = store.create_rule(
            s, actor, store.RuleSpec(name="failures", kind=RuleKind.RUN_FAILED,
                                     channel_ids=[hook.id], cooldown_s=60),
        )  # fmt: skip
        raise_alert(s, rule, "k1", {"subject": XSS}, datetime.now(UTC), run_id="run-42")
        return hook.id


# --- alerts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_alerts_page_for_everyone_logged_in(
    ctx: AppContext, console: Console, role: Role | None
) -> None:
    add_rule_and_alert(ctx)
    response = console(role).get("/alerts", follow_redirects=False)
    if role is None:
        assert response.status_code == 303
        return
    page = response.text
    assert response.status_code == 200
    assert "failures" in page
    assert "ops hook" in page
    assert 'href="/runs/run-42"' in page
    assert "tok-123" not in page
    assert "hook-secret" not in page
    assert ("New rule" in page) is (role in OPERATORS)
    assert ('action="/alerts/rules/' in page) is (role in OPERATORS)


def test_alert_subjects_are_escaped(ctx: AppContext, console: Console) -> None:
    with ctx.session() as s:
        rule = store.create_rule(
            s, Actor("a"), store.RuleSpec(name="x", kind=RuleKind.RUN_FAILED, channel_ids=[])
        )
        alert = raise_alert(s, rule, "k", {}, datetime.now(UTC))
        assert alert is not None
        alert.subject = XSS
    page = console(Role.VIEWER).get("/alerts").text
    assert XSS not in page
    assert "&lt;script&gt;" in page


@pytest.mark.parametrize("role", OPERATORS)
def test_operators_create_and_delete_rules(ctx: AppContext, console: Console, role: Role) -> None:
    hook_id = add_rule_and_alert(ctx)
    client = console(role)
    form = {"name": "slow", "kind": "duration_exceeded", "job_id": "", "tag": "nightly",
            "cooldown_s": "300", "channel_ids": str(hook_id),
            "csrf_token": csrf_of(client.get("/alerts").text)}  # fmt: skip
    created = client.post("/alerts/rules", data=form, follow_redirects=False)
    assert created.status_code == 303
    with ctx.session() as s:
        rule = s.scalar(select(AlertRule).where(AlertRule.name == "slow"))
        assert rule is not None
        assert (rule.kind, rule.tag, rule.channel_ids, rule.cooldown_s) == (
            "duration_exceeded", "nightly", [hook_id], 300,
        )  # fmt: skip
        rule_id = rule.id
    assert "Alert rule slow created." in client.get("/alerts").text
    token = csrf_of(client.get("/alerts").text)
    deleted = client.post(f"/alerts/rules/{rule_id}/delete", data={"csrf_token": token})
    assert deleted.status_code == 200  # followed back to the list
    assert "Alert rule slow deleted." in deleted.text
    with ctx.session() as s:
        assert s.get(AlertRule, rule_id) is None
        actions = s.scalars(
            select(AuditEntry.action).where(AuditEntry.object_type == "alert_rule")
        ).all()
    assert list(actions).count("delete") == 1


def test_refused_rule_keeps_the_input(ctx: AppContext, console: Console) -> None:
    client = console(Role.OPERATOR)
    form = {"name": "sys", "kind": "worker_offline", "job_id": "", "tag": "nightly",
            "cooldown_s": "60", "csrf_token": csrf_of(client.get("/alerts").text)}  # fmt: skip
    response = client.post("/alerts/rules", data=form)
    assert response.status_code == 422
    assert "is system-wide: no job or tag" in response.text
    assert 'value="nightly"' in response.text
    with ctx.session() as s:
        assert s.scalar(select(AlertRule).where(AlertRule.name == "sys")) is None


def test_viewer_and_forged_rule_changes_are_refused(ctx: AppContext, console: Console) -> None:
    add_rule_and_alert(ctx)
    with ctx.session() as s:
        rule_id = s.scalar(select(AlertRule.id))
    viewer = console(Role.VIEWER)
    token = csrf_of(viewer.get("/alerts").text)
    assert (
        viewer.post(f"/alerts/rules/{rule_id}/delete", data={"csrf_token": token}).status_code
        == 403
    )
    forged = console(Role.OPERATOR).post(f"/alerts/rules/{rule_id}/delete", data={})
    assert forged.status_code == 403
    with ctx.session() as s:
        assert s.get(AlertRule, rule_id) is not None


# --- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_settings_page_is_for_admins(console: Console, role: Role | None) -> None:
    response = console(role).get("/settings", follow_redirects=False)
    if role is None:
        assert response.status_code == 303
    elif role == Role.ADMIN:
        assert response.status_code == 200
    else:
        assert response.status_code == 403
        assert "MAINSPRING_" not in response.text


def test_settings_are_listed_with_secrets_masked(console: Console, settings: Settings) -> None:
    page = console(Role.ADMIN).get("/settings").text
    for name in Settings.model_fields:
        assert f'id="setting-{name}"' in page, name
    assert "MAINSPRING_BROKER_URL" in page
    assert "Asia/Shanghai" in page
    assert "tasks.report" in page
    for secret in ("very-secret-key-1", "first-admin-pw", "broker-pass-9"):
        assert secret not in page
    assert "redis://:***@127.0.0.1:6379/3" in page
    row = page[page.index('id="setting-secret_key"') :]
    assert "<code>***</code>" in row[: row.index("</tr>")]


def test_database_password_is_masked(data_dir: Path) -> None:
    url = f"postgresql://ms:{DATABASE_PASSWORD}@db.example/ms?sslmode=require"
    settings = Settings(data_dir=data_dir, database_url=url, broker_url=None)
    shown = {s.name: s for s in shown_settings(settings)}
    assert DATABASE_PASSWORD not in shown["database_url"].value
    assert shown["database_url"].masked
    derived = dict(derived_settings(settings))
    assert DATABASE_PASSWORD not in derived["Database"]
    assert "mainspring up" in derived["Broker"]  # no broker yet: said, not a failure


def test_settings_page_in_chinese(console: Console) -> None:
    page = console(Role.ADMIN).get("/settings", headers={"Accept-Language": "zh-CN"}).text
    assert "<h1>设置</h1>" in page
