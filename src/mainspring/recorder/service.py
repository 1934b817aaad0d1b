"""The recorder loop: receive Celery events, fold them, write them in batches.

Batches close every ``flush_interval`` seconds or ``max_batch`` events, whichever comes first.
Final results are read from the result backend (the event carries only a repr). A batch that
cannot be written is kept and merged into the next one, retried with backoff, never dropped.
A maintenance thread (``recorder.maintenance``) reconciles unfinished runs, detects lost runs,
inspects workers and applies retention; its findings reach the database through this loop, so
one thread writes run rows.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from mainspring.context import AppContext
from mainspring.recorder.backend import patch_from_meta
from mainspring.recorder.fold import RunPatch, fold
from mainspring.recorder.writer import LOG_CAP_BYTES, write_runs, write_workers
from mainspring.services.clock import utcnow
from mainspring.services.retention import RetentionPolicy
from mainspring.workflows.hooks import on_runs_written

logger = logging.getLogger("mainspring.recorder")

EVENT_QUEUE_NODE = "mainspring-recorder"
EVENT_QUEUE_TTL = 7 * 24 * 3600.0
MAX_BACKOFF = 30.0
META_STATES = {"SUCCESS", "FAILURE", "REVOKED"}


@dataclass(frozen=True)
class RecorderOptions:
    """Timings and limits of the recorder; defaults suit production."""

    flush_interval: float = 0.1
    max_batch: int = 1000
    reconcile_interval: float = 30.0
    inspect_interval: float = 60.0
    inspect_timeout: float = 1.0
    # A worker silent this long is offline (about 3 heartbeats of 2 s, plus clock-skew room).
    worker_timeout: float = 10.0
    retention_interval: float = 3600.0
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)
    log_cap_bytes: int = LOG_CAP_BYTES
    # How long the durable event queue (RabbitMQ) outlives a stopped recorder.
    event_queue_ttl: float = EVENT_QUEUE_TTL


class Recorder:
    def __init__(
        self,
        ctx: AppContext,
        app: Any,
        flush_interval: float | None = None,
        max_batch: int | None = None,
        queue_node: str = EVENT_QUEUE_NODE,
        options: RecorderOptions | None = None,
    ) -> None:
        opts = options or RecorderOptions()
        self.options = opts
        self._ctx = ctx
        self._queue_node = queue_node
        self._app = app
        self._flush_interval = opts.flush_interval if flush_interval is None else flush_interval
        self._max_batch = max_batch or opts.max_batch
        self._patches: dict[str, RunPatch] = {}
        self._worker_events: list[dict[str, Any]] = []
        self._submitted: queue.SimpleQueue[RunPatch] = queue.SimpleQueue()
        self._count = 0
        self._last_flush = time.monotonic()
        self._retry_at = 0.0
        self._failures = 0
        self.new_workers: set[str] = set()
        self.new_workers_lock = threading.Lock()

    def run(self, stop: threading.Event) -> None:
        """Consume events until ``stop`` is set, reconnecting after broker errors."""
        from mainspring.recorder.maintenance import Maintenance

        logger.info("recorder started")
        maintenance = Maintenance(self._ctx, self._app, self)
        helper = threading.Thread(
            target=maintenance.run, args=(stop,), name="recorder-maintenance", daemon=True
        )
        helper.start()
        while not stop.is_set():
            try:
                self._consume(stop)
            except Exception:
                logger.exception("recorder lost its event stream; reconnecting")
                stop.wait(1.0)
        helper.join(timeout=30)
        self._final_flush()
        logger.info("recorder stopped")

    def _consume(self, stop: threading.Event) -> None:
        """Drain events from the recorder's durable queue, flushing between and after them.

        The queue has a fixed name and survives a recorder restart, so events sent while the
        recorder is down wait for it (several recorders share the queue safely: writes merge).
        """
        with self._app.connection_for_read() as conn:
            receiver = self._app.events.Receiver(
                conn,
                handlers={"*": self.handle},
                node_id=self._queue_node,
                queue_durable=True,
                queue_exclusive=False,
                queue_ttl=self.options.event_queue_ttl,
                queue_expires=self.options.event_queue_ttl,
            )

            def on_iteration() -> None:
                self.flush_if_due()
                receiver.should_stop = stop.is_set()

            receiver.on_iteration = on_iteration
            for _ in receiver.consume(
                limit=None, timeout=None, safety_interval=self._flush_interval
            ):
                pass

    def handle(self, event: dict[str, Any]) -> None:
        etype = str(event.get("type", ""))
        if etype.startswith("worker-"):
            self._worker_events.append(event)
            if etype == "worker-online" and event.get("hostname"):
                with self.new_workers_lock:
                    self.new_workers.add(str(event["hostname"]))
        else:
            fold(self._patches, event)
        self._count += 1
        self.flush_if_due()

    def submit(self, patches: list[RunPatch]) -> None:
        """Hand patches found by other threads (reconciliation, lost runs) to the writer."""
        for patch in patches:
            self._submitted.put(patch)

    def flush_if_due(self) -> None:
        now = time.monotonic()
        if now < self._retry_at:
            return
        if self._count >= self._max_batch or now - self._last_flush >= self._flush_interval:
            self.flush()

    def flush(self) -> bool:
        """Write the batch; on failure keep it for the next attempt. True when written."""
        self._last_flush = time.monotonic()
        self._take_submitted()
        if not self._patches and not self._worker_events:
            return True
        patches, workers = self._patches, self._worker_events
        self._patches, self._worker_events, self._count = {}, [], 0
        try:
            self._add_backend_results(patches)
            now = utcnow()
            with self._ctx.session() as session:
                write_runs(session, patches, now, self.options.log_cap_bytes)
                on_runs_written(session, patches)  # workflows, dependencies; never raises
                write_workers(session, workers, now)
        except Exception:
            self._keep(patches, workers)
            return False
        if self._failures:
            logger.info("recorder writes again after %d failed attempts", self._failures)
        self._failures, self._retry_at = 0, 0.0
        return True

    def _keep(self, patches: dict[str, RunPatch], workers: list[dict[str, Any]]) -> None:
        """Merge a failed batch back in front of what arrived since, and back off."""
        self._failures += 1
        delay = min(MAX_BACKOFF, 0.5 * 2 ** (self._failures - 1))
        self._retry_at = time.monotonic() + delay
        logger.exception(
            "could not write %d runs and %d worker events (attempt %d); kept, retrying in %.1f s",
            len(patches),
            len(workers),
            self._failures,
            delay,
        )
        for run_id, patch in patches.items():
            newer = self._patches.get(run_id)
            if newer is not None:
                patch.merge(newer)
            self._patches[run_id] = patch
        self._worker_events = workers + self._worker_events

    def _take_submitted(self) -> None:
        while True:
            try:
                patch = self._submitted.get_nowait()
            except queue.Empty:
                return
            current = self._patches.get(patch.run_id)
            if current is None:
                self._patches[patch.run_id] = patch
            else:
                current.merge(patch)

    def _final_flush(self) -> None:
        for _ in range(3):
            if self.flush():
                return
            time.sleep(min(MAX_BACKOFF, 0.5 * 2**self._failures))
        logger.error("recorder stopped with %d runs not written", len(self._patches))

    def _add_backend_results(self, patches: dict[str, RunPatch]) -> None:
        """Results, tracebacks and real args of runs that just ended, from the backend."""
        ids = [
            run_id
            for run_id, patch in patches.items()
            if patch.state is not None and patch.state.value in META_STATES
        ]
        for run_id, meta in fetch_metas(self._app, ids).items():
            found = patch_from_meta(run_id, meta)
            if found is not None:
                patches[run_id].merge(found)


def fetch_metas(app: Any, run_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Backend metadata of many runs: one MGET on Redis, one read per run elsewhere."""
    if not run_ids:
        return {}
    backend = app.backend
    try:
        if hasattr(backend, "mget") and hasattr(backend, "get_key_for_task"):
            raw = backend.mget([backend.get_key_for_task(run_id) for run_id in run_ids])
            return {
                run_id: backend.decode_result(value)
                for run_id, value in zip(run_ids, raw, strict=True)
                if value
            }
        return {run_id: backend.get_task_meta(run_id) for run_id in run_ids}
    except Exception:
        logger.warning("could not read %d results from the backend", len(run_ids), exc_info=True)
        return {}
