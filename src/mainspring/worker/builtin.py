"""Built-in task types that need no user code: ``mainspring.echo`` and ``mainspring.shell``.

Shell execution is remote code execution, so a worker refuses it unless started with
``--allow-shell`` (setting ``worker_allow_shell``).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from collections import deque
from typing import IO, Any

from celery import Task, shared_task

from mainspring.worker.runlog import RunLogEmitter

logger = logging.getLogger("mainspring.worker")

OUTPUT_TAIL_LINES = 50


class ShellNotAllowedError(Exception):
    """This worker was not started with ``--allow-shell``."""


class ShellCommandFailedError(Exception):
    """The command exited with a non-zero code."""


def _emitter(task: Task) -> RunLogEmitter:
    return RunLogEmitter(task.send_event)


@shared_task(bind=True, name="mainspring.echo")
def echo(self: Task, message: str = "hello") -> str:
    """Log and return ``message``: a harmless task for checking the whole chain."""
    log = _emitter(self)
    log.write(message + "\n")
    log.flush()
    return message


@shared_task(bind=True, name="mainspring.shell")
def shell(
    self: Task,
    command: list[str] | None = None,
    script: str | None = None,
    cwd: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Run an argument list (or, explicitly, a shell script); stream output to the run log."""
    if not self.app.conf.get("mainspring_allow_shell"):
        raise ShellNotAllowedError(
            f"shell tasks are disabled on worker {self.request.hostname}; "
            "start it with --allow-shell"
        )
    argv = _argv(command, script)
    log = _emitter(self)
    tail: deque[str] = deque(maxlen=OUTPUT_TAIL_LINES)
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    reader = threading.Thread(target=_pump, args=(proc.stdout, log, tail), daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise ShellCommandFailedError(f"timed out after {timeout} s") from None
    finally:
        reader.join(timeout=5)
        log.flush()
    if code != 0:
        raise ShellCommandFailedError(f"exit code {code}: {''.join(tail)[-500:]}")
    return {"exit_code": code, "output_tail": "".join(tail)}


def _argv(command: list[str] | None, script: str | None) -> list[str]:
    if command and script:
        raise ValueError("give either command (argument list) or script, not both")
    if command:
        if not all(isinstance(part, str) for part in command):
            raise ValueError("command must be a list of strings")
        return list(command)
    if script:
        return ["/bin/sh", "-c", script]
    raise ValueError("a command (argument list) or a script is required")


def _pump(stream: IO[str] | None, log: RunLogEmitter, tail: deque[str]) -> None:
    if stream is None:
        return
    for line in stream:
        tail.append(line)
        log.write(line)
    stream.close()
