"""Test helpers: polling with a deadline, and child processes that never outlive a test."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import psutil

T = TypeVar("T")


def poll(check: Callable[[], T | None], timeout: float, interval: float = 0.1, what: str = "") -> T:
    """Call ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or check}")
        time.sleep(interval)


def mainspring_process(
    args: list[str], env: dict[str, str], log: Path, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start ``python -m mainspring ARGS`` in its own session, output to ``log``."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MAINSPRING_")}
    full_env.update(env)
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "mainspring", *args],
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=cwd,
        )


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def cmdline(process: psutil.Process) -> list[str]:
    """The command line, or [] for a process that is gone or a zombie."""
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def stop_process_tree(proc: subprocess.Popen[bytes], grace: float = 20.0) -> list[int]:
    """SIGTERM the process, wait, SIGKILL what is left; return pids that outlived the grace."""
    family = [proc.pid] + [p.pid for p in descendants(proc.pid)]
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    _, alive = psutil.wait_procs(_existing(family), timeout=5)
    survivors = [p.pid for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    return survivors


def _existing(pids: list[int]) -> list[psutil.Process]:
    procs = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            procs.append(psutil.Process(pid))
    return procs


@contextlib.contextmanager
def running_web(env: dict[str, str], port: int, log: Path) -> Iterator[str]:
    """A real ``mainspring web`` on ``port``; yields its base URL once /healthz answers, and
    stops it (and asserts nothing outlived it) afterwards."""
    import httpx

    proc = mainspring_process(["web"], {**env, "MAINSPRING_WEB_PORT": str(port)}, log)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(base + "/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        poll(up, timeout=60, what="mainspring web")
        yield base
    finally:
        assert stop_process_tree(proc) == []
