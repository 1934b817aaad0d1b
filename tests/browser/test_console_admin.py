"""The admin pages in a real browser: an admin adds a user and an API token (its secret shown
once), then reads the settings with the secret key masked. Screenshots go to
``test-artifacts/console/``."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mainspring.context import AppContext
from mainspring.core.states import Role
from mainspring.services.users import create_user
from mainspring.settings import Settings
from tests.browser.test_console_login import ARTIFACTS
from tests.browser.test_console_login import browser as browser  # the fixture
from tests.helpers import running_web

pytestmark = pytest.mark.browser

SHOTS = ARTIFACTS / "console"
PASSWORD = "browser-admin-password"
SECRET_KEY = "browser-secret-key-do-not-show"


@pytest.fixture
def admin_console(tmp_path: Path) -> Iterator[str]:
    """``mainspring web`` on a free port with one admin."""
    data_dir = tmp_path / "data"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ctx = AppContext.open(Settings(data_dir=data_dir))
    with ctx.session() as session:
        create_user(session, "root-admin", PASSWORD, Role.ADMIN)
    ctx.close()
    env = {
        "MAINSPRING_DATA_DIR": str(data_dir),
        "MAINSPRING_SECRET_KEY": SECRET_KEY,
    }
    with running_web(env, port, tmp_path / "web.log") as base:
        yield base


def test_admin_manages_users_tokens_and_reads_settings(browser: Any, admin_console: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(admin_console + "/users")
    page.fill("input[name=username]", "root-admin")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/users")

    page.fill("form[action='/users'] input[name=username]", "<b>carol</b>")
    page.fill("form[action='/users'] input[name=password]", "carol-password-1")
    page.select_option("form[action='/users'] select[name=role]", "operator")
    page.click("form[action='/users'] button[type=submit]")
    page.wait_for_url("**/users")
    assert page.locator("td", has_text="<b>carol</b>").count() == 1  # shown as text
    page.screenshot(path=str(SHOTS / "users.png"), full_page=True)

    page.click("text=API tokens")
    page.fill("form[action='/tokens'] input[name=name]", "ci deploy")
    page.click("form[action='/tokens'] button[type=submit]")
    secret = page.locator("pre.token-secret").inner_text()
    assert secret.startswith("ms_")
    page.screenshot(path=str(SHOTS / "tokens.png"), full_page=True)
    page.goto(admin_console + "/tokens")
    assert secret not in page.content()
    assert page.locator("td", has_text="ci deploy").count() == 1

    page.click("nav >> text=Settings")
    page.wait_for_url("**/settings")
    assert page.locator("#setting-secret_key code", has_text="***").count() == 1
    assert SECRET_KEY not in page.content()
    page.screenshot(path=str(SHOTS / "settings.png"), full_page=True)
