"""How a run travels to the broker: its options as message headers and ``send_task``
options (shared by submissions, the scheduler and workflows), publishing, and revoking."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mainspring.context import AppContext
from mainspring.core.states import RunState
from mainspring.db.models import Run
from mainspring.errors import ServiceUnavailableError
from mainspring.worker.guard import run_store
from mainspring.worker.task import RETRY_HEADER, RetryPolicy

MAX_SECONDS = 10 * 366 * 86400  # bounds that keep instants computable


class TaskOptions(BaseModel):
    """Where and how a submitted task runs (the API's ``options`` object)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    queue: str | None = Field(default=None, description="default: the task's route")
    worker: str | None = Field(default=None, description="run on this worker only")
    retry: RetryPolicy | None = None
    soft_time_limit: float | None = Field(
        default=None, gt=0, le=MAX_SECONDS, description="seconds (prefork)"
    )
    time_limit: float | None = Field(
        default=None, gt=0, le=MAX_SECONDS, description="seconds (prefork)"
    )
    expires: float | None = Field(
        default=None, gt=0, le=MAX_SECONDS, description="do not start after N s"
    )
    priority: int | None = Field(default=None, ge=0, le=9, description="0 lowest … 9 highest")


def message_options(
    options: TaskOptions, parent_id: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """How a run's options travel (shared with the scheduler): the retry policy as the
    ``mainspring_retry`` header; limits, expiry (seconds), priority and parentage as
    ``send_task`` options. Returns ``(headers, options)``, unset ones left out."""
    headers: dict[str, Any] = {}
    if options.retry is not None and options.retry.retries:
        headers[RETRY_HEADER] = options.retry.model_dump(mode="json")
    extra = {
        k: v
        for k, v in {
            "soft_time_limit": options.soft_time_limit,
            "time_limit": options.time_limit,
            "expires": options.expires,
            "priority": options.priority,
            "parent_id": parent_id,
            "root_id": parent_id,
        }.items()
        if v is not None
    }
    return headers, extra


def publish_run(
    ctx: AppContext, app: Any, run: Run, options: TaskOptions, parent_id: str | None = None
) -> None:
    """Hand the run to the broker; a broker failure marks the stored run FAILURE and raises."""
    headers, extra = message_options(options, parent_id)
    try:
        app.send_task(
            run.task,
            args=run.args,
            kwargs=run.kwargs,
            task_id=run.id,
            queue=run.queue,
            headers=headers,
            **extra,
        )
    except Exception as exc:
        with ctx.session() as session:
            stored = session.get(Run, run.id)
            if stored is not None and stored.state == RunState.SENT.value:
                stored.state = RunState.FAILURE.value
                stored.exception_type = type(exc).__name__
                stored.exception_message = f"could not publish: {exc}"
        raise ServiceUnavailableError(f"cannot publish run {run.id} to the broker: {exc}") from exc


def revoke_run(app: Any, run_id: str, terminate: bool = False, signal: str = "SIGTERM") -> None:
    """Cancel a run. The revocation is stored first (so a worker offline now still discards
    the run when it gets it), then broadcast; ``terminate`` also stops a running one (a shell
    task's whole process group)."""
    run_store(app).revoke(run_id, terminate)
    app.control.revoke(run_id, terminate=terminate, signal=signal)
