"""The console in a real browser (Debian's Chromium driven by Playwright): log in, see jobs
and runs, log out. Screenshots go to ``test-artifacts/``."""

from __future__ import annotations

import shutil
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mainspring.context import AppContext
from mainspring.core.states import Role, RunState, TriggerSource
from mainspring.db.models import Run
from mainspring.services import jobs as job_service
from mainspring.services.users import create_user
from mainspring.settings import Settings
from tests.conftest import REQUIRE_SERVICES
from tests.helpers import running_web

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PASSWORD = "browser-test-password"


@pytest.fixture
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        if REQUIRE_SERVICES:
            pytest.fail("Debian's chromium is not installed (.ci/run installs it)")
        pytest.skip("Debian's chromium is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield chromium
        chromium.close()


@pytest.fixture
def console(tmp_path: Path) -> Iterator[str]:
    """``mainspring web`` on a free port with one user, one job and one recorded run."""
    data_dir = tmp_path / "data"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ctx = AppContext.open(Settings(data_dir=data_dir))
    now = datetime.now(UTC)
    with ctx.session() as session:
        create_user(session, "ops", PASSWORD, Role.OPERATOR)
        job = job_service.create_job(
            session,
            job_service.JobSpec(
                name="nightly backup",
                task="mainspring.shell",
                trigger={"kind": "cron", "expr": "0 2 * * *"},
                timezone="Asia/Shanghai",
                kwargs={"script": "echo '<script>alert(1)</script>'"},
            ),
        )
        session.add(
            Run(
                id=str(uuid.uuid4()),
                job_id=job.id,
                task=job.task,
                args=[],
                kwargs=job.kwargs,
                options={},
                state=RunState.SUCCESS.value,
                trigger=TriggerSource.SCHEDULE.value,
                attempt=0,
                created_at=now,
                updated_at=now,
                worker="db-01@prod",
                log_bytes=0,
                log_truncated=False,
            )
        )
    ctx.close()
    env = {"MAINSPRING_DATA_DIR": str(data_dir)}
    with running_web(env, port, tmp_path / "web.log") as base:
        yield base


def test_operator_logs_in_and_sees_jobs_and_runs(browser, console: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 800})  # type: ignore[attr-defined]
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(console + "/jobs")
    assert "/login" in page.url
    page.fill("input[name=username]", "ops")
    page.fill("input[name=password]", "wrong-password")
    page.click("button[type=submit]")
    assert page.locator("input[name=username]").input_value() == "ops"
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/jobs")
    assert page.locator("text=nightly backup").count() == 1
    page.screenshot(path=str(ARTIFACTS / "jobs.png"), full_page=True)

    page.goto(console + "/runs")
    assert page.locator("text=db-01@prod").count() >= 1
    page.screenshot(path=str(ARTIFACTS / "runs.png"), full_page=True)
    page.locator("table a[href^='/runs/']").first.click()
    assert page.locator("text=<script>alert(1)</script>").count() >= 1  # shown as text
    page.screenshot(path=str(ARTIFACTS / "run.png"), full_page=True)
    assert dialogs == []

    page.click("text=Log out")
    page.goto(console + "/runs")
    assert "/login" in page.url
