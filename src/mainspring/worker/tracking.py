"""Per-run capture on the worker: what a task logs or prints becomes ``task-log`` events.

Why here and not in each task: user tasks are plain Celery functions that call ``logging`` and
``print``; capturing at the worker makes their output follow the run without changing them,
and keeps workers free of database access (the recorder stores the events).

How: ``task_prerun`` opens a :class:`RunLogEmitter` for the run and makes it the current one of
the executing thread (one per thread, so the threads pool works like prefork); a handler on the
root and ``celery.task`` loggers and proxies in place of ``sys.stdout``/``sys.stderr`` write to
it; a timer thread per process sends what waited more than 200 ms, so a run can be followed
live; ``task_postrun`` sends the rest. Output outside a run goes where it always went.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import IO, Any

from celery import Celery, Task, signals

from mainspring.worker.runlog import (
    DEFAULT_CAP_BYTES,
    FLUSH_SECONDS,
    SEQ_PER_ATTEMPT,
    RunLogEmitter,
    Sender,
)

LOG_CAP_SETTING = "mainspring_log_cap_bytes"
# Celery's own bookkeeping (and the transport under it) is not the task's output; the
# redirected-stdout logger is skipped because the stream proxies capture prints directly.
IGNORED_LOGGERS = ("celery.app.trace", "celery.worker", "celery.pool", "celery.redirected")
IGNORED_PREFIXES = ("kombu", "amqp", "celery.bootsteps", "celery.concurrency")
LOG_FORMAT = "%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s: %(message)s"


class _Tracker:
    """The per-process registry of runs being captured, keyed by thread and by run id."""

    def __init__(self) -> None:
        self.local = threading.local()
        self.active: dict[str, RunLogEmitter] = {}
        self.lock = threading.Lock()
        self.setup_pid = 0
        self.handler = _RunLogHandler(self)

    def current(self) -> RunLogEmitter | None:
        if getattr(self.local, "busy", False):
            return None  # output produced while sending output (e.g. a transport log)
        emitter: RunLogEmitter | None = getattr(self.local, "emitter", None)
        return emitter

    def start_run(self, task: Task, run_id: str) -> None:
        if task.request.is_eager:
            return
        self._setup_process()
        send = self._guarded(_sender(task.app, run_id, task.request.hostname))
        first_seq = int(task.request.retries or 0) * SEQ_PER_ATTEMPT
        emitter = RunLogEmitter(send, _cap(task), first_seq)
        self.local.emitter = emitter
        with self.lock:
            self.active[run_id] = emitter

    def end_run(self, run_id: str) -> None:
        with self.lock:
            emitter = self.active.pop(run_id, None)
        self.local.emitter = None
        if emitter is not None:
            emitter.flush()

    def _guarded(self, send: Sender) -> Sender:
        """Mark the thread busy while sending, so the transport's own logs are not captured."""

        def guarded(type_: str, **fields: Any) -> None:
            self.local.busy = True
            try:
                send(type_, **fields)
            except Exception:
                logging.getLogger("mainspring.worker").warning("could not send a log chunk")
            finally:
                self.local.busy = False

        return guarded

    def _setup_process(self) -> None:
        """Once per process (after a prefork fork too): handlers, stream proxies, timer."""
        if self.setup_pid == os.getpid():
            return
        self.setup_pid = os.getpid()
        for name in ("", "celery.task"):
            logger = logging.getLogger(name)
            if self.handler not in logger.handlers:
                logger.addHandler(self.handler)
        if not isinstance(sys.stdout, _StreamProxy):
            sys.stdout = _StreamProxy(sys.stdout, "stdout", self)
        if not isinstance(sys.stderr, _StreamProxy):
            sys.stderr = _StreamProxy(sys.stderr, "stderr", self)
        threading.Thread(target=self._flush_forever, name="mainspring-runlog", daemon=True).start()

    def _flush_forever(self) -> None:
        pid = os.getpid()
        while self.setup_pid == pid:
            time.sleep(FLUSH_SECONDS)
            with self.lock:
                emitters = list(self.active.values())
            for emitter in emitters:
                emitter.flush_if_stale()


class _RunLogHandler(logging.Handler):
    """Formats records of the thread's current run into its log (stream ``log``)."""

    def __init__(self, tracker: _Tracker) -> None:
        super().__init__()
        self._tracker = tracker
        formatter = logging.Formatter(LOG_FORMAT, datefmt="%Y-%m-%dT%H:%M:%S")
        formatter.converter = time.gmtime
        self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        emitter = self._tracker.current()
        if emitter is None or _ignored(record.name):
            return
        local = self._tracker.local
        if getattr(local, "last_record", None) is record:
            return  # reached through two loggers
        local.last_record = record
        try:
            emitter.write(self.format(record) + "\n", "log")
        except Exception:
            self.handleError(record)


def _ignored(name: str) -> bool:
    return name in IGNORED_LOGGERS or name.startswith(IGNORED_PREFIXES)


class _StreamProxy:
    """Stands in for ``sys.stdout``/``sys.stderr``: a run's writes go to its log."""

    def __init__(self, original: IO[str], name: str, tracker: _Tracker) -> None:
        self._original = original
        self._name = name
        self._tracker = tracker

    def write(self, text: str) -> int:
        emitter = self._tracker.current()
        if emitter is None:
            return self._original.write(text)
        emitter.write(text, self._name)
        return len(text)

    def flush(self) -> None:
        if self._tracker.current() is None:
            self._original.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)


def _sender(app: Celery, run_id: str, hostname: str | None) -> Sender:
    """Send events for one run from any thread (``Task.send_event`` reads a thread-local
    request, which the timer thread does not have). Nothing is looked up until a run has
    output to send: most runs have none, and this is set up for every run."""

    def send(type_: str, **fields: Any) -> None:
        policy = app.conf.task_publish_retry_policy
        with app.events.default_dispatcher(hostname=hostname) as dispatcher:
            dispatcher.send(type_, uuid=run_id, retry=True, retry_policy=policy, **fields)

    return send


_TRACKER = _Tracker()


def run_log(task: Task) -> RunLogEmitter:
    """The log of the run ``task`` is executing in this thread, for tasks that write their own
    output (shell): sharing it keeps one sequence of chunk numbers per run."""
    emitter = _TRACKER.current()
    if emitter is not None:
        return emitter
    return RunLogEmitter(task.send_event, _cap(task))


def _cap(task: Task) -> int:
    return int(task.app.conf.get(LOG_CAP_SETTING) or DEFAULT_CAP_BYTES)


def install_tracking(app: Celery) -> None:
    """Capture the output of every task this process runs (idempotent; harmless outside a
    worker, since nothing happens until a task starts)."""
    del app  # settings are read from each task's own app when its run starts
    signals.task_prerun.connect(_on_prerun, weak=False, dispatch_uid="mainspring.tracking.pre")
    signals.task_postrun.connect(_on_postrun, weak=False, dispatch_uid="mainspring.tracking.post")


def _on_prerun(sender: Task | None = None, task_id: str | None = None, **_: Any) -> None:
    if sender is not None and task_id:
        _TRACKER.start_run(sender, task_id)


def _on_postrun(task_id: str | None = None, **_: Any) -> None:
    if task_id:
        _TRACKER.end_run(task_id)
