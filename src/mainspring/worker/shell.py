"""Running a shell task's command: policy checks, streaming output, killing the process group.

The command runs in a session of its own, so a timeout or a cancel can kill everything it
started (``killpg``), not only its first process; whatever the command left running in its
group when it exits is killed too, so nothing outlives the run.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from mainspring.worker.runlog import RunLogEmitter
from mainspring.worker.schemas import ShellParams
from mainspring.worker.task import TaskRefusedError

OUTPUT_TAIL_LINES = 50
CANCEL_POLL_SECONDS = 0.5
KILL_GRACE_SECONDS = 2.0
CANCELLED = "cancelled"
SHELL_METACHARACTERS = set(";&|<>$`(){}\n\\*?!~")


class ShellNotAllowedError(TaskRefusedError):
    """This worker was not started with ``--allow-shell``."""


class CommandNotAllowedError(TaskRefusedError):
    """The command is not on this worker's allow-list (``--shell-allow``)."""


class ShellCommandFailedError(Exception):
    """The command exited with a non-zero code or timed out."""


class ShellCancelledError(Exception):
    """The run was cancelled (revoked with terminate) while its command ran."""


@dataclass(frozen=True)
class ShellPolicy:
    allow_shell: bool
    prefixes: tuple[str, ...] = ()

    def check(self, params: ShellParams, hostname: str) -> None:
        """Refuse unless shell is enabled and, with an allow-list, the command is on it."""
        if not self.allow_shell:
            raise ShellNotAllowedError(
                f"shell tasks are disabled on worker {hostname}; start it with --allow-shell"
            )
        if not self.prefixes:
            return
        argv = _simple_argv(params)
        for prefix in self.prefixes:
            wanted = shlex.split(prefix)
            if argv is not None and wanted and argv[: len(wanted)] == wanted:
                return
        shown = shlex.join(params.command) if params.command else params.script
        raise CommandNotAllowedError(
            f"command {shown!r} is not allowed on worker {hostname}; allowed prefixes: "
            + ", ".join(repr(p) for p in self.prefixes)
        )


def _simple_argv(params: ShellParams) -> list[str] | None:
    """The argv to check against prefixes; None for a script that is not one simple command
    (with pipes, ``;``, substitutions … a prefix says nothing about what runs)."""
    if params.command is not None:
        return list(params.command)
    script = params.script or ""
    if any(ch in SHELL_METACHARACTERS for ch in script):
        return None
    try:
        return shlex.split(script)
    except ValueError:
        return None


@dataclass(frozen=True)
class ShellOutcome:
    exit_code: int
    output_tail: str


def run_command(
    params: ShellParams, log: RunLogEmitter, cancelled: Callable[[], bool]
) -> ShellOutcome:
    """Run the command to its end, its timeout or a cancel; stream its output to ``log``."""
    tail: deque[str] = deque(maxlen=OUTPUT_TAIL_LINES)
    proc = subprocess.Popen(
        params.argv(),
        cwd=params.cwd,
        env={**os.environ, **params.env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    reader = threading.Thread(target=_pump, args=(proc.stdout, log, tail), daemon=True)
    reader.start()
    try:
        with _terminate_kills_group(proc) as terminated:
            reason = _wait(proc, params.timeout, lambda: terminated.is_set() or cancelled())
    finally:
        _kill_group(proc)
        reader.join(timeout=10)
        log.flush()
    text = "".join(tail)
    if reason == CANCELLED:
        raise ShellCancelledError(f"cancelled; process group killed: {text[-500:]}")
    if reason:
        raise ShellCommandFailedError(f"{reason}; process group killed: {text[-500:]}")
    if proc.returncode != 0:
        raise ShellCommandFailedError(f"exit code {proc.returncode}: {text[-500:]}")
    return ShellOutcome(exit_code=0, output_tail=text)


def _wait(proc: subprocess.Popen[str], timeout: float | None, cancelled: Callable[[], bool]) -> str:
    """Wait for the process; return why it was stopped early ('' if it ended by itself)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        step = CANCEL_POLL_SECONDS
        if deadline is not None:
            step = min(step, max(deadline - time.monotonic(), 0.0))
        try:
            proc.wait(timeout=step)
            return ""
        except subprocess.TimeoutExpired:
            pass
        if deadline is not None and time.monotonic() >= deadline:
            return f"timed out after {timeout} s"
        if cancelled():
            return CANCELLED


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGTERM the whole group, SIGKILL what is left after a grace period."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + KILL_GRACE_SECONDS
        while time.monotonic() < deadline and _group_alive(proc):
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _group_alive(proc: subprocess.Popen[str]) -> bool:
    proc.poll()
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return False
    return True


@contextlib.contextmanager
def _terminate_kills_group(proc: subprocess.Popen[str]) -> Iterator[threading.Event]:
    """In a prefork pool child, Celery's ``revoke(terminate=True)`` SIGTERMs the child: turn
    that into killing the command's group instead of orphaning it."""
    event = threading.Event()
    if not _in_pool_child():
        yield event
        return

    def on_term(signum: int, frame: Any) -> None:
        event.set()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield event
    finally:
        signal.signal(signal.SIGTERM, previous)


def _in_pool_child() -> bool:
    if threading.current_thread() is not threading.main_thread():
        return False
    from billiard.process import current_process  # type: ignore[import-untyped]

    return bool(current_process().name != "MainProcess")


def _pump(stream: IO[str] | None, log: RunLogEmitter, tail: deque[str]) -> None:
    if stream is None:
        return
    for line in stream:
        tail.append(line)
        log.write(line)
    stream.close()
