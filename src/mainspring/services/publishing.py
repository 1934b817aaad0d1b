"""How a run travels to the broker: its options as message headers and ``send_task``
options (shared by submissions, the scheduler and workflows), publishing, and revoking."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import update

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


class SentId:
    """What ``send_task`` returns here instead of an ``AsyncResult``: publishers never wait
    on the result, and an ``AsyncResult`` costs a finaliser (and, on Redis, an UNSUBSCRIBE)."""

    __slots__ = ("id", "ignored")

    def __init__(self, task_id: str, *_args: Any, **_kwargs: Any) -> None:
        self.id = task_id


def publish_run(
    ctx: AppContext,
    app: Any,
    run: Run,
    options: TaskOptions,
    parent_id: str | None = None,
    producer: Any = None,
) -> None:
    """Hand the run to the broker; a broker failure marks the stored run FAILURE and raises.
    ``producer`` (from ``app.producer_or_acquire()``) lets a batch share one channel."""
    headers, extra = message_options(options, parent_id)
    if app.current_worker_task is None:  # inside a task, Celery records it as a child
        extra["result_cls"] = SentId
    try:
        app.send_task(
            run.task,
            args=run.args,
            kwargs=run.kwargs,
            task_id=run.id,
            queue=run.queue,
            headers=headers,
            producer=producer,
            **extra,
        )
    except Exception as exc:
        raise mark_unpublished(ctx, [run.id], exc) from exc


def mark_unpublished(
    ctx: AppContext, run_ids: list[str], exc: Exception
) -> ServiceUnavailableError:
    """Mark runs that never reached the broker FAILURE (those still SENT: a worker may have
    reported on one meanwhile) and return the error to answer with."""
    with ctx.session() as session:
        session.execute(
            update(Run)
            .where(Run.id.in_(run_ids), Run.state == RunState.SENT.value)
            .values(
                state=RunState.FAILURE.value,
                exception_type=type(exc).__name__,
                exception_message=f"could not publish: {exc}",
            )
            .execution_options(synchronize_session=False)
        )
    which = f"run {run_ids[0]}" if len(run_ids) == 1 else f"{len(run_ids)} runs"
    return ServiceUnavailableError(f"cannot publish {which} to the broker: {exc}")


def publish_batch(producer: Any) -> AbstractContextManager[Any]:
    """Buffer the producer's publishes until the block ends (kombu >= 5.7 ``Producer.batch``:
    one pipelined round trip on Redis; other transports publish at once)."""
    batch = getattr(producer, "batch", None)
    return batch() if batch is not None else nullcontext()


def quiet_results(app: Any) -> Any:
    """Make ``app.send_task`` skip the Redis result backend's per-task subscription.

    Celery's Redis result backend SUBSCRIBEs to each task's result channel as the task is
    sent, so that ``AsyncResult.get()`` in the same process wakes at once: a broker round
    trip per message (and an UNSUBSCRIBE later). A process that never calls ``get()`` (the
    web app reads results from the backend's key or from the run) does not need it. The
    backend is made per thread, so its factory is wrapped rather than one instance patched.
    """
    from celery.backends.redis import RedisBackend

    make = app._get_backend

    def backend() -> Any:
        made = make()
        if isinstance(made, RedisBackend):
            made.on_task_call = _no_subscription
        return made

    app._get_backend = backend
    return app


def _no_subscription(_producer: Any, _task_id: str) -> None:
    return None


def revoke_run(app: Any, run_id: str, terminate: bool = False, signal: str = "SIGTERM") -> None:
    """Cancel a run. The revocation is stored first (so a worker offline now still discards
    the run when it gets it), then broadcast; ``terminate`` also stops a running one (a shell
    task's whole process group)."""
    run_store(app).revoke(run_id, terminate)
    app.control.revoke(run_id, terminate=terminate, signal=signal)
