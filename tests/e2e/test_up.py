"""``mainspring up`` as a user runs it: embedded broker, every role, a job firing, clean stop."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from tests.helpers import cmdline, descendants, mainspring_process, poll, stop_process_tree

pytestmark = pytest.mark.e2e

PASSWORD = "e2e-admin-password"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class System:
    proc: subprocess.Popen[bytes]
    env: dict[str, str]
    base_url: str
    log: Path

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mainspring", *args],
            env={**self.env, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
        )

    def api(self, path: str) -> httpx.Response:
        return httpx.get(self.base_url + path, auth=("admin", PASSWORD), timeout=10)


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    port = free_port()
    env = {
        "MAINSPRING_DATA_DIR": str(tmp_path / "data"),
        "MAINSPRING_WEB_PORT": str(port),
        "MAINSPRING_ADMIN_PASSWORD": PASSWORD,
    }
    log = tmp_path / "up.log"
    proc = mainspring_process(["up", "--allow-shell"], env, log)
    running = System(proc=proc, env=env, base_url=f"http://127.0.0.1:{port}", log=log)
    try:
        poll(lambda: _healthy(running), timeout=60, what="the console to answer")
        yield running
    finally:
        stop_process_tree(proc, grace=30)


def _healthy(system: System) -> bool:
    if system.proc.poll() is not None:
        raise AssertionError(f"mainspring up exited early:\n{system.log.read_text()}")
    try:
        return httpx.get(system.base_url + "/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _runs(system: System, **params: str) -> list[dict[str, object]]:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    response = system.api(f"/api/v1/runs?{query}")
    assert response.status_code == 200, response.text
    items: list[dict[str, object]] = response.json()["items"]
    return items


def test_a_shell_job_fires_and_its_run_is_recorded_with_output(system: System) -> None:
    added = system.cli("jobs", "add", "backup", "--every", "2s", "--shell", "echo hi")
    assert added.returncode == 0, added.stderr

    def succeeded_backup() -> list[dict[str, object]]:
        return [r for r in _runs(system, state="SUCCESS") if r["task"] == "mainspring.shell"]

    run = poll(succeeded_backup, timeout=90, what="a succeeded backup run")[0]
    assert run["worker"]
    assert run["started_at"]
    assert run["finished_at"]
    logs = poll(
        lambda: system.api(f"/api/v1/runs/{run['id']}/logs").json()["text"],
        timeout=10,
        what="the run's log",
    )
    assert logs == "hi\n"

    listed = system.cli("runs", "--job", "backup")
    assert listed.returncode == 0, listed.stderr
    assert run["id"] in listed.stdout
    assert "SUCCESS" in listed.stdout

    example = poll(
        lambda: [r for r in _runs(system, state="SUCCESS") if r["task"] == "mainspring.echo"],
        timeout=30,
        what="the example job's run",
    )
    assert example[0]["result"] == "hello from Mainspring"


def test_the_console_requires_a_login(system: System) -> None:
    anonymous = httpx.get(system.base_url + "/jobs", timeout=10, follow_redirects=False)
    assert anonymous.status_code in (302, 303, 307)
    assert "/login" in anonymous.headers["location"]
    assert httpx.get(system.base_url + "/api/v1/runs", timeout=10).status_code == 401


def test_stopping_leaves_no_process_behind(system: System) -> None:
    family = poll(
        lambda: descendants(system.proc.pid) if len(descendants(system.proc.pid)) >= 5 else None,
        timeout=30,
        what="all children to start",
    )
    names = " ".join(" ".join(cmdline(p)) for p in family)
    for role in ("redis-server", "web", "scheduler", "recorder", "worker"):
        assert role in names
    assert stop_process_tree(system.proc, grace=30) == []
    assert system.proc.returncode == 0
    assert not [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_a_killed_role_is_restarted(system: System) -> None:
    def scheduler_pid() -> int | None:
        for p in descendants(system.proc.pid):
            if "scheduler" in cmdline(p):
                return p.pid
        return None

    first = poll(scheduler_pid, timeout=30, what="the scheduler child")
    psutil.Process(first).kill()
    second = poll(
        lambda: pid if (pid := scheduler_pid()) not in (None, first) else None,
        timeout=30,
        what="a restarted scheduler",
    )
    assert second != first
    assert "restart" in system.log.read_text().lower()
