"""The recorder loop: receive Celery events, fold them, write them in batches.

Batches close every ``flush_interval`` seconds or ``max_batch`` events, whichever comes first,
and go to a writing thread (a batch waiting for a busy writer grows meanwhile), so consuming
overlaps writing.
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
from mainspring.recorder.batch import Batch
from mainspring.recorder.consumer import EventStream
from mainspring.recorder.fold import RunPatch
from mainspring.recorder.writer import LOG_CAP_BYTES, write_runs, write_workers
from mainspring.services.clock import utcnow
from mainspring.services.retention import RetentionPolicy
from mainspring.workflows.hooks import on_runs_written

logger = logging.getLogger("mainspring.recorder")

EVENT_QUEUE_NODE = "mainspring-recorder"
EVENT_QUEUE_TTL = 7 * 24 * 3600.0
MAX_BACKOFF = 30.0
META_STATES = {"SUCCESS", "FAILURE", "REVOKED"}
STOP_DRAIN_S = 5.0  # on stop, how long the last batch may take to be written and acked


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
    # RabbitMQ: events received and not yet committed (acknowledged in bulk once written).
    prefetch: int = 10_000


class Recorder:
    """Folds events into batches and writes them. ``run`` consumes from the broker on one
    thread and writes on another (so consuming goes on while a batch is committed);
    ``handle`` and ``flush`` do both in the caller's thread (tests, in-process benchmarks)."""

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
        self._batch = Batch()  # folding: the consuming thread's
        self._batch_started = time.monotonic()
        self._kept = Batch()  # writing, or waiting to be retried: the writing thread's
        self._handoff: queue.Queue[Batch] = queue.Queue(maxsize=1)
        self._submitted: queue.SimpleQueue[RunPatch] = queue.SimpleQueue()
        self._stream: EventStream | None = None
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
        writing = threading.Event()
        writer = threading.Thread(
            target=self._write_loop, args=(writing,), name="recorder-writer", daemon=True
        )
        writing.set()
        writer.start()
        while not stop.is_set():
            try:
                self._consume(stop)
            except Exception:
                logger.exception("recorder lost its event stream; reconnecting")
                stop.wait(1.0)
        helper.join(timeout=30)
        writing.clear()
        writer.join(timeout=30)
        self._final_flush()
        logger.info("recorder stopped")

    def _consume(self, stop: threading.Event) -> None:
        """Drain events from the recorder's durable queue, handing batches to the writer.

        The queue has a fixed name and survives a recorder restart, so events sent while the
        recorder is down wait for it (several recorders share the queue safely: writes merge).
        """
        with self._app.connection_for_read() as conn:
            stream = EventStream(
                self._app,
                conn,
                self._queue_node,
                self.options.event_queue_ttl,
                self.options.prefetch,
                self._on_events,
            )
            self._stream = stream
            try:
                with stream:
                    while not stop.is_set():
                        stream.drain(self._flush_interval)
                        self._hand_off_if_due()
                    self._hand_off_and_wait(stream)
            finally:
                self._stream = None

    def _on_events(self, events: list[dict[str, Any]], message: Any) -> None:
        if not self._batch:
            self._batch_started = time.monotonic()
        for event in events:
            self._add(event)
        if message is not None:
            self._batch.ack = message
        if self._batch.events >= self._max_batch:
            self._hand_off_if_due()

    def _add(self, event: dict[str, Any]) -> None:
        if event.get("type") == "worker-online" and event.get("hostname"):
            with self.new_workers_lock:
                self.new_workers.add(str(event["hostname"]))
        self._batch.add(event)

    def _hand_off_if_due(self) -> None:
        """Pass the batch to the writer once it is full or old enough and the writer is free;
        while the writer is busy, the batch grows (up to ``prefetch`` events, then we wait)."""
        batch = self._batch
        if not batch:
            return
        full = batch.events >= self._max_batch
        if not full and time.monotonic() - self._batch_started < self._flush_interval:
            return
        try:
            if batch.events >= self.options.prefetch:
                self._handoff.put(batch, timeout=self._flush_interval)
            else:
                self._handoff.put_nowait(batch)
        except queue.Full:
            return
        self._batch = Batch()

    def _hand_off_and_wait(self, stream: EventStream) -> None:
        """On stop: hand the last batch over and acknowledge what the writer commits (what
        is not written by the deadline is left to the final flush)."""
        deadline = time.monotonic() + STOP_DRAIN_S
        if self._batch:
            try:
                self._handoff.put(self._batch, timeout=STOP_DRAIN_S)
                self._batch = Batch()
            except queue.Full:
                pass
        with self._handoff.all_tasks_done:
            self._handoff.all_tasks_done.wait_for(
                lambda: not self._handoff.unfinished_tasks, max(0.0, deadline - time.monotonic())
            )
        stream.send_acks()

    def _write_loop(self, writing: threading.Event) -> None:
        """The writing thread: batches from the consumer, patches from maintenance."""
        while writing.is_set() or self._handoff.qsize():
            try:
                batch = self._handoff.get(timeout=self._flush_interval)
            except queue.Empty:
                batch = None
            try:
                self._kept.merge_later(batch or Batch())
                if time.monotonic() >= self._retry_at:
                    self._write()
            finally:
                if batch is not None:
                    self._handoff.task_done()

    def handle(self, event: dict[str, Any]) -> None:
        """Fold one event in, writing in this thread when a batch is due."""
        if not self._batch:
            self._batch_started = time.monotonic()
        self._add(event)
        self.flush_if_due()

    def submit(self, patches: list[RunPatch]) -> None:
        """Hand patches found by other threads (reconciliation, lost runs) to the writer."""
        for patch in patches:
            self._submitted.put(patch)

    def flush_if_due(self) -> None:
        now = time.monotonic()
        if now < self._retry_at:
            return
        if (
            self._batch.events >= self._max_batch
            or now - self._batch_started >= self._flush_interval
        ):
            self.flush()

    def flush(self) -> bool:
        """Write the batch (in this thread); on failure keep it for the next attempt. True
        when written."""
        batch, self._batch = self._batch, Batch()
        self._batch_started = time.monotonic()
        self._kept.merge_later(batch)
        return self._write()

    def _write(self) -> bool:
        """Write the kept batch with what maintenance submitted; keep it on failure."""
        self._take_submitted()
        batch = self._kept
        if not batch:
            return True
        try:
            self._persist(batch)
        except Exception:
            self._back_off(batch)
            return False
        self._kept = Batch()
        stream = self._stream
        if batch.ack is not None and stream is not None:
            stream.acknowledge(batch.ack)
        if self._failures:
            logger.info("recorder writes again after %d failed attempts", self._failures)
        self._failures, self._retry_at = 0, 0.0
        return True

    def _persist(self, batch: Batch) -> None:
        self._add_backend_results(batch.patches)
        now = utcnow()
        with self._ctx.session() as session:
            hooked = write_runs(session, batch.patches, now, self.options.log_cap_bytes)
            on_runs_written(session, dict.fromkeys(hooked))  # workflows, dependencies
            write_workers(session, batch.workers, now)

    def _back_off(self, batch: Batch) -> None:
        self._failures += 1
        delay = min(MAX_BACKOFF, 0.5 * 2 ** (self._failures - 1))
        self._retry_at = time.monotonic() + delay
        logger.exception(
            "could not write %d runs and %d worker events (attempt %d); kept, retrying in %.1f s",
            len(batch.patches),
            len(batch.workers),
            self._failures,
            delay,
        )

    def _take_submitted(self) -> None:
        while True:
            try:
                patch = self._submitted.get_nowait()
            except queue.Empty:
                return
            self._kept.add_patch(patch)

    def _final_flush(self) -> None:
        for _ in range(3):
            if self.flush():
                return
            time.sleep(min(MAX_BACKOFF, 0.5 * 2**self._failures))
        logger.error("recorder stopped with %d runs not written", len(self._kept.patches))

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
    if not run_ids or app is None:  # no Celery app: events only (tests, benchmarks)
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
