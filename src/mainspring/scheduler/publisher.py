"""Publishing claimed runs as Celery task messages (id = run id), on a producer kept open."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from mainspring.scheduler.firing import DueRun

logger = logging.getLogger("mainspring.scheduler")


class Publisher(Protocol):
    """Hands one run to the broker; returns only once the broker has it (or raises)."""

    def publish(self, run: DueRun) -> None: ...


class Revoker(Protocol):
    """Stops a run that may be queued or running (overlap policy ``replace``)."""

    def revoke(self, run_id: str) -> None: ...


def headers_of(run: DueRun) -> dict[str, Any]:
    """What every task receives about its fire, whatever its arguments."""
    return {
        "mainspring_job_id": run.job_id,
        "mainspring_scheduled_for": run.due.isoformat(),
        "mainspring_window_start": run.window_start.isoformat() if run.window_start else None,
        "mainspring_window_end": run.window_end.isoformat() if run.window_end else None,
    }


class CeleryPublisher:
    """Publishes Celery protocol-2 messages straight through one kombu producer held for the
    process's life: no pool round trip and no ``task-sent`` event per message (the scheduler
    records SENT itself). A broken connection is replaced once and the publish retried."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._producer: Any = None
        self._declared: set[str] = set()

    def publish(self, run: DueRun) -> None:
        try:
            self._send(run)
        except Exception:
            logger.warning("publish failed; reconnecting to the broker", exc_info=True)
            self.close()
            self._send(run)

    def _send(self, run: DueRun) -> None:
        from kombu.entity import Queue

        if self._producer is None:
            self._producer = self._app.producer_pool.acquire(block=True)
            self._declared.clear()
        message = self._app.amqp.create_task_message(run.run_id, run.task, run.args, run.kwargs)
        declare = [] if run.queue in self._declared else [Queue(run.queue)]
        self._producer.publish(
            message.body,
            exchange="",
            routing_key=run.queue,
            headers={**message.headers, **headers_of(run)},
            serializer="json",
            delivery_mode=2,
            declare=declare,
            **message.properties,
        )
        self._declared.add(run.queue)

    def revoke(self, run_id: str) -> None:
        self._app.control.revoke(run_id, terminate=True)

    def close(self) -> None:
        if self._producer is not None:
            try:
                self._producer.release()
            finally:
                self._producer = None
