"""The ``mainspring.shell`` built-in on real worker processes (Redis broker and backend)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from celery.result import AsyncResult

from mainspring.services.tasks import revoke_run
from mainspring.settings import Settings
from mainspring.worker.app import make_celery
from mainspring.worker.routing import host_queue
from tests.conftest import WorkerPool, redis_test_url, require_service
from tests.helpers import cmdline, poll

pytestmark = [pytest.mark.celery, pytest.mark.redis]


class Shell:
    """Workers with different shell policies on one Redis, and a client app."""

    def __init__(self, pool: WorkerPool, data_dir: Path) -> None:
        require_service("redis")
        import redis

        url = redis_test_url()
        redis.Redis.from_url(url).flushdb()
        self.env = {"MAINSPRING_DATA_DIR": str(data_dir), "MAINSPRING_BROKER_URL": url}
        self.app = make_celery(Settings(data_dir=data_dir, broker_url=url))
        common = ["-P", "threads", "-c", "2"]
        self.allowed = pool.start(self.env, *common, "--allow-shell", name="shell-on@t")
        self.refusing = pool.start(self.env, *common, name="shell-off@t")
        self.listed = pool.start(
            self.env, *common, "--allow-shell", "--shell-allow", "echo", name="shell-list@t"
        )
        self.pool = pool

    def send(self, worker: str, **kwargs: Any) -> AsyncResult:
        return self.app.send_task("mainspring.shell", kwargs=kwargs, queue=host_queue(worker))


@pytest.fixture(scope="module")
def shell(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shell]:
    tmp = tmp_path_factory.mktemp("shell")
    (tmp / "data").mkdir()
    pool = WorkerPool(tmp)
    try:
        s = Shell(pool, tmp / "data")
        yield s
        s.app.close()
    finally:
        survivors = [pid for name in list(pool.procs) for pid in pool.stop(name)]
        assert survivors == [], f"worker processes outlived SIGTERM: {survivors}"


def _failure(result: AsyncResult, timeout: float = 30) -> BaseException:
    result.get(timeout=timeout, propagate=False)
    assert result.state == "FAILURE", result.state
    exc = result.result
    assert isinstance(exc, BaseException)
    return exc


def _processes_with(marker: str) -> list[psutil.Process]:
    return [p for p in psutil.process_iter() if marker in " ".join(cmdline(p))]


def _marker() -> str:
    return f"{300 + random.randint(1, 10**6) / 10**7:.7f}"


def test_successful_command_returns_exit_code_and_output_tail(shell: Shell) -> None:
    result = shell.send(shell.allowed, command=["sh", "-c", "echo one; echo two >&2"]).get(
        timeout=30
    )
    assert result == {"exit_code": 0, "output_tail": "one\ntwo\n"}


def test_non_zero_exit_fails_the_run_with_the_code_and_output(shell: Shell) -> None:
    exc = _failure(shell.send(shell.allowed, script="echo about-to-fail; exit 3"))
    assert type(exc).__name__ == "ShellCommandFailedError"
    assert "exit code 3" in str(exc)
    assert "about-to-fail" in str(exc)


def test_timeout_kills_the_whole_process_group(shell: Shell) -> None:
    marker = _marker()
    script = f"sleep {marker} & sleep {marker}; wait"
    exc = _failure(shell.send(shell.allowed, script=script, timeout=1.5))
    assert "timed out after 1.5 s" in str(exc)
    poll(lambda: not _processes_with(marker), timeout=10, what="no process of the command left")


def test_cancel_while_running_kills_the_process_group(shell: Shell) -> None:
    marker = _marker()
    result = shell.send(shell.allowed, script=f"sleep {marker} & sleep {marker}; wait")
    poll(lambda: len(_processes_with(marker)) >= 2, timeout=20, what="the command to start")
    revoke_run(shell.app, result.id, terminate=True)
    poll(lambda: not _processes_with(marker), timeout=10, what="the process group to die")
    poll(lambda: result.state == "REVOKED", timeout=10, what="the run to be REVOKED")


def test_output_of_100000_lines_is_streamed_and_tailed(shell: Shell) -> None:
    result = shell.send(shell.allowed, command=["seq", "1", "100000"]).get(timeout=120)
    assert result["exit_code"] == 0
    lines = result["output_tail"].splitlines()
    assert len(lines) == 50
    assert lines[-1] == "100000"
    assert lines[0] == "99951"


def test_worker_without_allow_shell_refuses_and_keeps_running(shell: Shell) -> None:
    exc = _failure(shell.send(shell.refusing, command=["echo", "hi"]))
    assert type(exc).__name__ == "ShellNotAllowedError"
    assert "--allow-shell" in str(exc)
    echo = shell.app.send_task(
        "mainspring.echo", kwargs={"message": "still here"}, queue=host_queue(shell.refusing)
    )
    assert echo.get(timeout=30) == "still here"


def test_allow_list_accepts_listed_prefixes_only(shell: Shell) -> None:
    assert shell.send(shell.listed, command=["echo", "ok"]).get(timeout=30)["exit_code"] == 0
    assert shell.send(shell.listed, script="echo fine").get(timeout=30)["exit_code"] == 0
    for params in ({"command": ["ls", "/"]}, {"script": "echo ok; rm -rf /tmp/x"}):
        exc = _failure(shell.send(shell.listed, **params))
        assert type(exc).__name__ == "CommandNotAllowedError"
        assert "not allowed" in str(exc)


def test_bad_parameters_fail_the_run_with_a_clear_error(shell: Shell) -> None:
    exc = _failure(shell.send(shell.allowed, command=["echo"], script="echo"))
    assert type(exc).__name__ == "InvalidParamsError"
    assert "exactly one of command" in str(exc)
    exc = _failure(shell.send(shell.allowed, command="echo hi", timeout=-1))
    assert "command" in str(exc)
    assert "timeout" in str(exc)
    assert shell.send(shell.allowed, command=["true"]).get(timeout=30)["exit_code"] == 0
