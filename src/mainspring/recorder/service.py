"""The recorder loop: receive Celery events, fold them, write them in batches.

Batches close every ``flush_interval`` seconds or ``max_batch`` events, whichever comes first.
Final results are read from the result backend (the event carries only a repr).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from mainspring.context import AppContext
from mainspring.core.states import RunState
from mainspring.recorder.fold import RunPatch, fold
from mainspring.recorder.writer import capped_result, write_runs, write_workers
from mainspring.services.clock import utcnow

logger = logging.getLogger("mainspring.recorder")

EVENT_QUEUE_NODE = "mainspring-recorder"
EVENT_QUEUE_TTL = 7 * 24 * 3600.0


class Recorder:
    def __init__(
        self,
        ctx: AppContext,
        app: Any,
        flush_interval: float = 0.1,
        max_batch: int = 1000,
        queue_node: str = EVENT_QUEUE_NODE,
    ) -> None:
        self._ctx = ctx
        self._queue_node = queue_node
        self._app = app
        self._flush_interval = flush_interval
        self._max_batch = max_batch
        self._patches: dict[str, RunPatch] = {}
        self._worker_events: list[dict[str, Any]] = []
        self._count = 0
        self._last_flush = time.monotonic()

    def run(self, stop: threading.Event) -> None:
        """Consume events until ``stop`` is set, reconnecting after broker errors."""
        logger.info("recorder started")
        while not stop.is_set():
            try:
                self._consume(stop)
            except Exception:
                logger.exception("recorder lost its event stream; reconnecting")
                stop.wait(1.0)
        self.flush()
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
                queue_ttl=EVENT_QUEUE_TTL,
                queue_expires=EVENT_QUEUE_TTL,
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
        else:
            fold(self._patches, event)
        self._count += 1
        self.flush_if_due()

    def flush_if_due(self) -> None:
        elapsed = time.monotonic() - self._last_flush
        if self._count >= self._max_batch or elapsed >= self._flush_interval:
            self.flush()

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        if not self._patches and not self._worker_events:
            return
        patches, workers = self._patches, self._worker_events
        self._patches, self._worker_events, self._count = {}, [], 0
        results = self._fetch_results(patches)
        now = utcnow()
        with self._ctx.session() as session:
            write_runs(session, patches, results, now)
            write_workers(session, workers, now)

    def _fetch_results(self, patches: dict[str, RunPatch]) -> dict[str, Any]:
        results: dict[str, Any] = {}
        for run_id, patch in patches.items():
            if patch.state is not RunState.SUCCESS:
                continue
            try:
                meta = self._app.backend.get_task_meta(run_id)
            except Exception:
                logger.warning("could not read the result of run %s", run_id, exc_info=True)
                continue
            if meta.get("status") == "SUCCESS":
                results[run_id] = capped_result(meta.get("result"))
        return results
