"""The console's audit log: admins only, filters by object, actor and action, keyset pages,
changes shown escaped with secrets masked as stored, and 简体中文."""

from __future__ import annotations

import re

import pytest

from mainspring.context import AppContext
from mainspring.core.states import Role
from mainspring.services.audit import record
from tests.integration.test_console_jobs import ROLES, XSS, Console
from tests.integration.test_console_jobs import console as console  # the fixture


def add_entries(ctx: AppContext, count: int, **values: str) -> None:
    with ctx.session() as s:
        for i in range(count):
            record(
                s,
                values.get("actor", "alice"),
                values.get("action", "update"),
                values.get("object_type", "job"),
                values.get("object_id", str(i + 1)),
                {"before": {"name": f"old {i}"}, "after": {"name": f"new {i}"}},
                "10.0.0.7",
            )


def shown(html: str) -> list[str]:
    return re.findall(r"<del>&#34;old (\d+)&#34;</del>", html)


@pytest.mark.parametrize("role", ROLES)
def test_audit_page_is_for_admins(ctx: AppContext, console: Console, role: Role | None) -> None:
    add_entries(ctx, 1)
    response = console(role).get("/audit", follow_redirects=False)
    if role is None:
        assert response.status_code == 303
        assert response.headers["location"] == "/login?next=/audit"
    elif role == Role.ADMIN:
        assert response.status_code == 200
        assert "10.0.0.7" in response.text
        assert '<a href="/jobs/1">1</a>' in response.text
        assert 'href="/audit"' in response.text  # in the menu
    else:
        assert response.status_code == 403
        assert "This needs the admin role" in response.text
        assert "10.0.0.7" not in response.text


def test_menu_link_only_for_admins(console: Console) -> None:
    assert 'href="/audit"' not in console(Role.OPERATOR).get("/jobs").text


def test_filters(ctx: AppContext, console: Console) -> None:
    add_entries(ctx, 2)
    add_entries(ctx, 1, actor="bob", action="purge", object_type="queue", object_id="reports")
    client = console(Role.ADMIN)
    page = client.get("/audit?actor=bob").text
    assert "reports" in page
    assert "alice" not in page
    assert len(shown(client.get("/audit?object_type=job&object_id=2").text)) == 1
    assert len(shown(client.get("/audit?action=update").text)) == 2
    assert "No entries match." in client.get("/audit?actor=nobody").text


def test_pages_continue_before_the_last_entry(ctx: AppContext, console: Console) -> None:
    add_entries(ctx, 60)
    client = console(Role.ADMIN)
    first = client.get("/audit?action=update").text
    assert shown(first)[:2] == ["59", "58"]  # newest first
    assert len(shown(first)) == 50
    older = re.search(r'<a href="([^"]+)" rel="next">', first)
    assert older is not None
    second = client.get(older.group(1).replace("&amp;", "&")).text
    assert shown(second) == [str(i) for i in range(9, -1, -1)]
    assert 'rel="next"' not in second


def test_a_forged_cursor_is_a_message(console: Console) -> None:
    response = console(Role.ADMIN).get("/audit?cursor=abc")
    assert response.status_code == 422
    assert "is not a next_cursor from a previous page" in response.text


def test_changes_are_escaped_and_secrets_stay_masked(ctx: AppContext, console: Console) -> None:
    with ctx.session() as s:
        changes = {"before": {}, "after": {"name": XSS, "password": "hunter2"}}
        record(s, XSS, "create", "user", XSS, changes)
    page = console(Role.ADMIN).get("/audit").text
    assert XSS not in page
    assert "&lt;script&gt;" in page
    assert "hunter2" not in page


def test_audit_page_in_chinese(ctx: AppContext, console: Console) -> None:
    add_entries(ctx, 1)
    page = console(Role.ADMIN).get("/audit", headers={"Accept-Language": "zh-CN"}).text
    assert "<h1>审计日志</h1>" in page
