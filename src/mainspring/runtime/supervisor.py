"""Run the processes of ``mainspring up``, restart the ones that crash, stop them all cleanly.

Each child gets a session (and process group) of its own, so Ctrl-C in a terminal reaches only
the supervisor, which then stops the children in reverse start order. Group signals plus a
psutil snapshot of each child's descendants make sure nothing outlives ``run()``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import FrameType
from typing import IO, Any

import psutil

from mainspring.runtime.backoff import RestartBackoff

log = logging.getLogger("mainspring.runtime")

Stream = int | IO[Any] | None
SignalHandler = Callable[[int, FrameType | None], Any] | int | None
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class ChildSpec:
    """One supervised process.

    ``env`` is added to the supervisor's own environment. ``ready`` runs once, after the first
    start, and the next child starts only when it returns (e.g. once Redis answers PING); if it
    raises, ``run()`` stops what it started and re-raises. ``stdout``/``stderr`` default to the
    supervisor's, so children log to the terminal; stdin is always /dev/null.
    """

    name: str
    argv: list[str]
    env: dict[str, str] | None = None
    ready: Callable[[], None] | None = None
    stdout: Stream = None
    stderr: Stream = None


class _Child:
    """A spec, its current process, and when to restart it after a crash."""

    def __init__(self, spec: ChildSpec, backoff: RestartBackoff) -> None:
        self.spec = spec
        self.backoff = backoff
        self.proc: subprocess.Popen[bytes] | None = None
        self.restart_at: float | None = None


class Supervisor:
    """Start children in order, restart crashed ones with backoff, stop all on signal or ``stop()``.

    Guarantees: when ``run()`` returns (or raises), every child and every descendant it had when
    the stop began is dead; a child that ignores SIGTERM is SIGKILLed after ``grace`` seconds.
    """

    def __init__(
        self,
        children: list[ChildSpec],
        *,
        grace: float = 15.0,
        poll_interval: float = 0.2,
        backoff: Callable[[], RestartBackoff] = RestartBackoff,
    ) -> None:
        names = [spec.name for spec in children]
        if len(set(names)) != len(names):
            raise ValueError(f"child names must be unique, got {names}")
        self._children = [_Child(spec, backoff()) for spec in children]
        self._grace = grace
        self._poll_interval = poll_interval
        self._stop_requested = threading.Event()
        self._signalled: int | None = None
        self._lock = threading.Lock()
        self.started = threading.Event()
        """Set once every child has started and passed its ``ready`` check."""

    def pids(self) -> dict[str, int]:
        """Pid of each child running now (one waiting to be restarted is absent)."""
        with self._lock:
            return {c.spec.name: c.proc.pid for c in self._children if c.proc is not None}

    def stop(self) -> None:
        """Ask ``run()`` to stop every child and return; safe from any thread."""
        self._stop_requested.set()

    def run(self) -> None:
        """Supervise until SIGINT/SIGTERM (handled only on the main thread) or ``stop()``."""
        previous = self._install_signal_handlers()
        try:
            if self._start_all():
                self.started.set()
                self._supervise()
        finally:
            self._stop_all()
            for signum, handler in previous.items():
                signal.signal(signum, signal.SIG_DFL if handler is None else handler)

    def _install_signal_handlers(self) -> dict[signal.Signals, SignalHandler]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        return {signum: signal.signal(signum, self._on_signal) for signum in STOP_SIGNALS}

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only a plain assignment: Event.set() here could deadlock on the Event's own lock if
        # the signal lands while the main thread holds it. The loop notices within a poll.
        self._signalled = signum

    def _stopping(self) -> bool:
        return self._signalled is not None or self._stop_requested.is_set()

    def _start_all(self) -> bool:
        for child in self._children:
            if self._stopping():
                return False
            self._spawn(child)
            if child.spec.ready is not None:
                child.spec.ready()
        return not self._stopping()

    def _spawn(self, child: _Child) -> None:
        spec = child.spec
        env = {**os.environ, **spec.env} if spec.env is not None else None
        proc = subprocess.Popen(
            spec.argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=spec.stdout,
            stderr=spec.stderr,
            start_new_session=True,
        )
        with self._lock:
            child.proc = proc
        child.restart_at = None
        child.backoff.started()
        log.info(
            "started %s (pid %d)", spec.name, proc.pid, extra={"child": spec.name, "pid": proc.pid}
        )

    def _supervise(self) -> None:
        while not self._stopping():
            for child in self._children:
                self._tend(child)
            self._stop_requested.wait(self._poll_interval)
        if self._signalled is not None:
            log.info("received %s; stopping", signal.Signals(self._signalled).name)

    def _tend(self, child: _Child) -> None:
        """Reap a child that exited and schedule its restart, or restart it when due."""
        proc = child.proc
        if proc is None:
            if child.restart_at is not None and time.monotonic() >= child.restart_at:
                self._restart(child)
            return
        if not _has_exited(proc.pid):
            return
        _signal_group(proc.pid, signal.SIGKILL)  # what the crashed child left in its group
        code = proc.wait()
        with self._lock:
            child.proc = None
        delay = self._schedule_restart(child)
        log.warning(
            "%s (pid %d) exited with code %s; restarting in %.1f s",
            child.spec.name,
            proc.pid,
            _describe(code),
            delay,
            extra={"child": child.spec.name, "exit_code": code, "delay": delay},
        )

    def _restart(self, child: _Child) -> None:
        try:
            self._spawn(child)
        except OSError as exc:
            delay = self._schedule_restart(child)
            log.error(
                "could not restart %s (%s); retrying in %.1f s",
                child.spec.name,
                exc,
                delay,
                extra={"child": child.spec.name, "delay": delay},
            )

    def _schedule_restart(self, child: _Child) -> float:
        delay = child.backoff.next_delay()
        child.restart_at = time.monotonic() + delay
        return delay

    def _stop_all(self) -> None:
        for child in reversed(self._children):
            self._stop_child(child)

    def _stop_child(self, child: _Child) -> None:
        """SIGTERM group and escaped descendants, wait up to ``grace``, then SIGKILL them all."""
        proc = child.proc
        if proc is None:
            return
        name = child.spec.name
        tree = _descendants(proc.pid)  # before signalling: orphans cannot be traced later
        log.info("stopping %s (pid %d)", name, proc.pid, extra={"child": name, "pid": proc.pid})
        _signal_group(proc.pid, signal.SIGTERM)
        _terminate_outside_group(tree, proc.pid)
        deadline = time.monotonic() + self._grace
        if not _wait_until(lambda: _has_exited(proc.pid) and not _alive(tree), deadline):
            log.warning(
                "%s did not stop within %g s; killing it",
                name,
                self._grace,
                extra={"child": name, "pid": proc.pid},
            )
        tree = _merge(tree, _descendants(proc.pid))
        _signal_group(proc.pid, signal.SIGKILL)
        _kill(tree)
        proc.wait()
        with self._lock:
            child.proc = None
        if not _wait_until(lambda: not _alive(tree), time.monotonic() + 5.0):
            log.error("descendants of %s survived SIGKILL", name, extra={"child": name})


def _has_exited(pid: int) -> bool:
    """Whether our child ``pid`` has exited, without reaping it: while it is an unreaped zombie
    its pid, which is also its process group id, cannot be reused, so signalling the group
    stays safe."""
    try:
        status = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return status is not None


def _signal_group(pgid: int, signum: int) -> None:
    # An empty group is fine; macOS reports a group holding only a zombie as EPERM.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _merge(*groups: Iterable[psutil.Process]) -> list[psutil.Process]:
    return list({p.pid: p for group in groups for p in group}.values())


def _alive(processes: Iterable[psutil.Process]) -> bool:
    """Whether any of ``processes`` still runs; a zombie has finished, only its reaping is left."""
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                return True
        except psutil.Error:
            continue
    return False


def _terminate_outside_group(processes: Iterable[psutil.Process], pgid: int) -> None:
    """SIGTERM descendants that left the group (setsid): the group signal missed them."""
    for process in processes:
        try:
            if os.getpgid(process.pid) != pgid:
                process.terminate()
        except (OSError, psutil.Error):
            continue


def _kill(processes: Iterable[psutil.Process]) -> None:
    for process in processes:
        try:
            process.kill()  # psutil checks the pid was not reused
        except psutil.Error:
            continue


def _wait_until(done: Callable[[], bool], deadline: float, interval: float = 0.05) -> bool:
    pause = threading.Event()
    while not done():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        pause.wait(min(interval, remaining))
    return True


def _describe(code: int) -> str:
    if code >= 0:
        return str(code)
    try:
        return f"{code} ({signal.Signals(-code).name})"
    except ValueError:
        return str(code)
