"""The M6 scenario in a real browser against ``mainspring up --allow-shell`` (embedded Redis,
scheduler, recorder, a worker): create a shell job every 2 s through the form, watch its runs
and a running run's log arrive without reloading, pause, edit, switch to 简体中文, check a
viewer's page and a forged POST, delete. Screenshots go to ``test-artifacts/console/``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.test_console_login import ARTIFACTS
from tests.browser.test_console_login import browser as browser  # the fixture
from tests.e2e.test_up import free_port
from tests.helpers import mainspring_process, poll, stop_process_tree

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

ADMIN_PASSWORD = "browser-admin-password"
VIEWER_PASSWORD = "browser-viewer-password"
SHOTS = ARTIFACTS / "console"
SCRIPT = (
    'echo "start <script>alert(1)</script>"; for i in 1 2 3 4 5; do echo "tick $i"; sleep 1; done'
)
SLOW = 60_000  # ms: a fire every 2 s, a run takes 5 s, the machine may be busy


@pytest.fixture
def system(tmp_path: Path) -> Iterator[str]:
    """``mainspring up --allow-shell`` on a free port; its base URL."""
    port = free_port()
    env = {
        "MAINSPRING_DATA_DIR": str(tmp_path / "data"),
        "MAINSPRING_WEB_PORT": str(port),
        "MAINSPRING_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "MAINSPRING_TIMEZONE": "Asia/Shanghai",
    }
    log = tmp_path / "up.log"
    proc = mainspring_process(["up", "--allow-shell", "--no-example"], env, log)
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"mainspring up exited early:\n{log.read_text()}")
        try:
            return httpx.get(base + "/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        poll(healthy, timeout=90, what="mainspring up")
        created = httpx.post(
            base + "/api/v1/users",
            json={"username": "watcher", "password": VIEWER_PASSWORD, "role": "viewer"},
            auth=("admin", ADMIN_PASSWORD),
            timeout=10,
        )
        assert created.status_code == 201, created.text
        yield base
    finally:
        assert stop_process_tree(proc, grace=30) == []


def log_in(page: Any, base: str, username: str, password: str) -> None:
    page.goto(base + "/login?next=/jobs")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url("**/jobs")


def job_runs(base: str, job_id: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{base}/api/v1/jobs/{job_id}/runs?limit=500", auth=("admin", ADMIN_PASSWORD), timeout=10
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def create_job_through_the_form(page: Any, base: str) -> str:
    """Fill the job form as a user would; the fire preview updates while typing."""
    page.goto(base + "/jobs/new")
    page.fill("input[name=name]", "tick demo")
    page.fill("textarea[name=description]", "made in a browser <script>alert(2)</script>")
    page.check("input[name=trigger_kind][value=interval]")
    assert page.locator("input[name=cron_expr]").is_hidden()  # only the interval's fields
    page.fill("input[name=every]", "2")
    page.select_option("select[name=every_unit]", "s")
    fires = page.locator("[data-preview-list] li")
    fires.nth(4).wait_for()  # the live preview: five fire times, 2 s apart
    assert fires.count() == 5
    assert all(t.endswith("+08:00") for t in fires.all_inner_texts())
    page.fill("textarea[name='param:mainspring.shell:script']", SCRIPT)
    page.click("summary:has-text('Policies')")
    page.select_option("select[name=overlap_policy]", "skip")
    page.screenshot(path=str(SHOTS / "job-form.png"), full_page=True)
    page.click("button[type=submit]:has-text('Save')")
    page.wait_for_url(re.compile(r".*/jobs/\d+$"))
    assert page.locator(".flash").inner_text() == "Job created."
    return str(page.url.rsplit("/", 1)[1])


def test_the_console_scenario(browser: Any, system: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    log_in(page, system, "admin", ADMIN_PASSWORD)
    job_id = create_job_through_the_form(page, system)
    assert page.locator("p.description").inner_text().endswith("<script>alert(2)</script>")

    # Runs appear on the job's page, with their output, without reloading it.
    page.evaluate("window.notReloaded = true")
    page.locator("#job-live td.output", has_text="tick 5").first.wait_for(timeout=SLOW)
    assert page.evaluate("window.notReloaded") is True
    page.screenshot(path=str(SHOTS / "job.png"), full_page=True)

    # A running run: its log grows while we watch, then it ends as SUCCESS.
    running = page.locator("#job-live a:has(.state-started)").first
    running.wait_for(timeout=SLOW)
    running.click()
    page.wait_for_url("**/runs/**")
    log = page.locator("#run-log")
    seen = log.text_content() or ""
    page.wait_for_function(
        "n => (document.getElementById('run-log').textContent.match(/tick/g) || []).length > n",
        arg=seen.count("tick"),
        timeout=SLOW,
    )
    page.locator("#run-state.state-success").wait_for(timeout=SLOW)
    assert "start <script>alert(1)</script>\n" in (log.text_content() or "")
    assert "tick 5" in (log.text_content() or "")
    page.screenshot(path=str(SHOTS / "run.png"), full_page=True)

    page.goto(system + "/runs")
    assert page.locator("table.runs tbody tr").count() >= 2
    page.screenshot(path=str(SHOTS / "runs.png"), full_page=True)

    # Pause: no new run afterwards.
    page.goto(f"{system}/jobs/{job_id}")
    page.click("button:has-text('Pause')")
    assert "Job paused" in page.locator(".flash").inner_text()
    before = len(job_runs(system, job_id))
    page.wait_for_timeout(6000)  # three fire periods: an observation window, not a wait
    assert len(job_runs(system, job_id)) == before

    # Edit: the form shows the stored job; the change is saved.
    page.click("a:has-text('Edit')")
    assert page.locator("input[name=every]").input_value() == "2"
    page.fill("input[name=name]", "tick demo edited")
    page.fill("input[name=every]", "3")
    page.click("button[type=submit]:has-text('Save')")
    page.wait_for_url(f"**/jobs/{job_id}")
    assert page.locator("h1").inner_text().startswith("tick demo edited")
    assert page.locator("dd code", has_text="every 3.0 s").count() == 1

    check_viewer(browser, system, job_id)
    check_chinese(page, system)

    # Delete, after the confirmation page.
    page.goto(f"{system}/jobs/{job_id}")
    page.click("a:has-text('Delete')")
    page.click("button:has-text('Delete job')")
    page.wait_for_url(f"{system}/jobs")
    assert page.locator("text=tick demo edited").count() == 1  # only in the message
    assert page.locator(f"a[href='/jobs/{job_id}']").count() == 0
    page.screenshot(path=str(SHOTS / "jobs.png"), full_page=True)
    assert dialogs == []  # no <script> ever ran
    context.close()


def check_viewer(browser: Any, base: str, job_id: str) -> None:
    """A viewer sees no controls, and a POST made by hand is refused."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    log_in(page, base, "watcher", VIEWER_PASSWORD)
    page.goto(f"{base}/jobs/{job_id}")
    for label in ("Edit", "Pause", "Resume", "Delete", "Clone", "Run now…"):
        assert page.locator(f"text='{label}'").count() == 0, label
    status = page.evaluate(
        """async (url) => {
            const body = new FormData();
            body.append("csrf_token", document.querySelector("meta[name=csrf-token]").content);
            return (await fetch(url, {method: "POST", body})).status;
        }""",
        f"/jobs/{job_id}/resume",
    )
    assert status == 403
    context.close()


def check_chinese(page: Any, base: str) -> None:
    """Switch to 简体中文 with the header's switcher, and back."""
    page.goto(base + "/jobs")
    page.select_option("select[name=language]", "zh-CN")  # submits on change
    page.wait_for_function("document.documentElement.lang === 'zh-CN'")
    assert page.locator("h1").inner_text().startswith("作业")
    assert page.locator("nav a[href='/runs']").inner_text() == "运行"
    assert page.locator("a.button", has_text="新建作业").count() == 1
    page.screenshot(path=str(SHOTS / "jobs-zh.png"), full_page=True)
    page.select_option("select[name=language]", "en")
    page.wait_for_function("document.documentElement.lang === 'en'")
