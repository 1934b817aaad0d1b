"""Request and response bodies of the tasks, runs actions, workers, queues and stats APIs."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from mainspring.api.schemas import RunOut
from mainspring.services.tasks import TaskOptions

MAX_DELAY_S = 366 * 86400
PRINTABLE = r"^[^\x00-\x1f\x7f]+$"

# --- tasks ----------------------------------------------------------------------------------


class SubmitOptions(TaskOptions):
    """``TaskOptions`` plus when (``eta`` or ``countdown``) and ``broadcast``."""

    eta: AwareDatetime | None = Field(default=None, description="run at this instant")
    countdown: float | None = Field(
        default=None, ge=0, le=MAX_DELAY_S, description="run in N seconds"
    )
    broadcast: bool = Field(
        default=False, description="one copy on every live worker consuming the queue"
    )


class TaskSubmit(BaseModel):
    """A task to run. ``idempotency_key`` (or the ``Idempotency-Key`` header): a repeat of the
    request with the same key returns the first run instead of creating another."""

    model_config = ConfigDict(extra="forbid")

    # The name's syntax is checked by the service (a 422 naming ``task``).
    task: str = Field(min_length=1, max_length=255, examples=["mainspring.echo"])
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    options: SubmitOptions = Field(default_factory=SubmitOptions)
    idempotency_key: str | None = Field(default=None, max_length=200, pattern=PRINTABLE)


class SubmittedChild(BaseModel):
    """One copy of a broadcast: SENT to ``worker``, or SKIPPED with the reason."""

    id: str
    worker: str | None
    queue: str | None
    state: str
    reason: str | None


class TaskSubmitted(BaseModel):
    """The run created (``replayed`` false) or the earlier one with the same idempotency
    key (``replayed`` true). Follow it at ``url``."""

    id: str
    task: str
    state: str
    queue: str | None
    scheduled_for: datetime | None
    idempotency_key: str | None
    replayed: bool
    url: str
    reason: str | None = None
    children: list[SubmittedChild] | None = None


class TaskType(BaseModel):
    name: str
    builtin: bool
    workers: list[str] = Field(description="hosts that have registered it")
    online_workers: list[str]


class TaskTypes(BaseModel):
    """Task names to offer, and the parameter schema (JSON Schema) of each built-in task."""

    items: list[TaskType]
    builtin_schemas: dict[str, dict[str, Any]]


# --- runs -----------------------------------------------------------------------------------


class RunDetail(RunOut):
    """One run with its lineage and options: ``parent_id`` links broadcast copies and
    workflow steps, ``reason`` says why a run was skipped, cancelled or repeated."""

    parent_id: str | None
    root_id: str | None
    reason: str | None
    idempotency_key: str | None
    options: dict[str, Any]
    routing_key: str | None
    worker_pid: int | None
    window_start: datetime | None
    window_end: datetime | None
    traceback: str | None
    log_bytes: int
    log_truncated: bool


SIGNALS = ("SIGTERM", "SIGKILL", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2")
Signal = Literal["SIGTERM", "SIGKILL", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2"]


class TerminateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    signal: Signal = Field(default="SIGTERM", description="sent to the run's process")

    @field_validator("signal", mode="before")
    @classmethod
    def _normalise(cls, value: Any) -> Any:
        if isinstance(value, str):
            name = value.strip().upper()
            return name if name.startswith("SIG") else f"SIG{name}"
        return value


class RerunIn(BaseModel):
    """Fields left out are taken from the run being repeated."""

    model_config = ConfigDict(extra="forbid")

    args: list[Any] | None = None
    kwargs: dict[str, Any] | None = None
    options: TaskOptions | None = None


class RunActionOut(BaseModel):
    """``state`` is the run's state now; ``detail`` says what happens next."""

    id: str
    action: str
    state: str
    detail: str
    children: int = Field(description="copies of a broadcast acted on as well")


# --- workers --------------------------------------------------------------------------------


class WorkerOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    hostname: str
    status: str
    queues: list[str]
    pool: str | None
    concurrency: int | None
    active: int
    processed: int
    loadavg: list[float] | None
    pid: int | None
    first_seen_at: datetime
    last_heartbeat_at: datetime | None


class WorkerDetail(WorkerOut):
    registered_tasks: list[str]
    software: dict[str, Any]
    updated_at: datetime


class WorkerList(BaseModel):
    items: list[WorkerOut]


class PingOut(BaseModel):
    hostname: str
    reply: str
    elapsed_ms: float


class WorkerRuns(BaseModel):
    """What a worker holds now, as it reports it (Celery's request descriptions)."""

    hostname: str
    active: list[dict[str, Any]]
    reserved: list[dict[str, Any]]
    scheduled: list[dict[str, Any]]


class PoolResize(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n: int = Field(default=1, ge=1, le=512, description="processes to add or remove")


class AutoscaleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max: int = Field(ge=1, le=512)
    min: int = Field(ge=0, le=512)


class ConsumerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    queue: str = Field(min_length=1, max_length=200)


class ControlOut(BaseModel):
    hostname: str
    action: str
    reply: str = Field(description="the worker's own answer")


# --- queues ---------------------------------------------------------------------------------


class QueueOut(BaseModel):
    """``messages`` waiting (None when the broker cannot say); on Redis also per kombu
    priority sub-queue, on RabbitMQ the consumers it counts."""

    name: str
    messages: int | None
    consumers: int | None
    by_priority: dict[str, int] | None
    workers: list[str] = Field(description="workers known to consume it")
    exists: bool


class QueueList(BaseModel):
    broker: str
    items: list[QueueOut]


class PurgeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    confirm: str = Field(description="the queue's name again")


class PurgeOut(BaseModel):
    name: str
    purged: int


# --- stats ----------------------------------------------------------------------------------


class StateBucket(BaseModel):
    start: datetime
    total: int
    counts: dict[str, int]


class RunStats(BaseModel):
    """Runs created per bucket, by state; bucket starts are local times in ``timezone``."""

    bucket: str
    timezone: str
    since: datetime
    until: datetime
    job_id: int | None
    total: int
    counts: dict[str, int]
    buckets: list[StateBucket]


class JobStatsItem(BaseModel):
    job_id: int | None
    name: str | None
    total: int
    counts: dict[str, int]


class JobStats(BaseModel):
    """Runs per job (``job_id`` null: runs of no job) by state, most runs first."""

    since: datetime
    until: datetime
    items: list[JobStatsItem]


class Lateness(BaseModel):
    """How late scheduled runs were published (``runs.lateness_ms``), nearest-rank
    percentiles; null when no run in the range has a lateness."""

    since: datetime
    until: datetime
    job_id: int | None
    count: int
    p50_ms: float | None
    p95_ms: float | None
    max_ms: float | None
