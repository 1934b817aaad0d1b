"""Publishing claimed runs as Celery task messages (id = run id)."""

from __future__ import annotations

from typing import Any, Protocol

from mainspring.scheduler.claims import DueRun


class Publisher(Protocol):
    """Hands one run to the broker; returns only once the broker has it (or raises)."""

    def publish(self, run: DueRun) -> None: ...


class CeleryPublisher:
    def __init__(self, app: Any) -> None:
        self._app = app

    def publish(self, run: DueRun) -> None:
        headers = {
            "mainspring_job_id": run.job_id,
            "mainspring_scheduled_for": run.due.isoformat(),
            "mainspring_window_start": run.window_start.isoformat() if run.window_start else None,
            "mainspring_window_end": run.window_end.isoformat() if run.window_end else None,
        }
        self._app.send_task(
            run.task,
            args=run.args,
            kwargs=run.kwargs,
            task_id=run.run_id,
            queue=run.queue,
            headers=headers,
        )
