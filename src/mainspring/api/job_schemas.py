"""Request and response bodies of ``/api/v1/jobs``.

Requests forbid unknown fields, so a typo is a 422 naming it. The schema checks shapes and
ranges (so the OpenAPI document tells clients); ``services.jobs`` checks the rest (a cron
expression, a time zone, a task name) and names the field as ``trigger.expr`` and the like.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from mainspring.core.states import MisfirePolicy, OverlapPolicy
from mainspring.worker.task import RetryPolicy
from mainspring.workflows.definition import WORKFLOW_TASK

MAX_INTERVAL_MS = 10 * 366 * 86_400_000  # ten years
MAX_LOOKBACK_S = 10 * 366 * 86_400
_EARLIEST, _LATEST = datetime(1970, 1, 2, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC)
NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"


def _in_range(value: datetime) -> datetime:
    """Far from the ends of the calendar, so that adding intervals never overflows."""
    if not _EARLIEST <= value <= _LATEST:
        raise ValueError("must be between 1970-01-02 and 9000-01-01")
    return value


def _finite(value: Any) -> Any:
    """Arguments become stored JSON: NaN and infinities (which Python's JSON reader accepts)
    are not JSON, and PostgreSQL refuses them."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("NaN and infinite numbers are not JSON")
    if isinstance(value, dict):
        for item in value.values():
            _finite(item)
    elif isinstance(value, list):
        for item in value:
            _finite(item)
    return value


Instant = Annotated[AwareDatetime, AfterValidator(_in_range)]
Args = Annotated[list[Any], AfterValidator(_finite)]
Kwargs = Annotated[dict[str, Any], AfterValidator(_finite)]
JobName = Annotated[str, Field(min_length=1, max_length=200, pattern=NO_CONTROL)]
TaskName = Annotated[str, Field(min_length=1, max_length=255, pattern=NO_CONTROL)]
QueueName = Annotated[str, Field(min_length=1, max_length=200, pattern=NO_CONTROL)]
ZoneName = Annotated[str, Field(min_length=1, max_length=64, pattern=NO_CONTROL)]
Tag = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f,]*$")]


class _Strict(BaseModel):
    # extra="forbid" also keeps the pydantic mypy plugin from adding a ``**kwargs`` to
    # ``__init__`` that would clash with the ``kwargs`` field.
    model_config = ConfigDict(extra="forbid")


# --- triggers ---------------------------------------------------------------------------


class CronTriggerIn(_Strict):
    """5 fields, or 6 with leading seconds; macros (``@daily``), ``L``, ``W``, ``#``, ``H``."""

    kind: Literal["cron"]
    expr: str = Field(min_length=1, max_length=200, examples=["0 2 * * *"])
    v: Literal[1] | None = None


class IntervalTriggerIn(_Strict):
    """Every ``every_ms``, the n-th fire due at ``anchor + n x every_ms`` (default anchor:
    now, to the second)."""

    kind: Literal["interval"]
    every_ms: int = Field(ge=10, le=MAX_INTERVAL_MS)
    anchor: Instant | None = None
    v: Literal[1] | None = None


class OnceTriggerIn(_Strict):
    kind: Literal["once"]
    at: Instant
    v: Literal[1] | None = None


class ManualTriggerIn(_Strict):
    """Fires only when run now."""

    kind: Literal["manual"]
    v: Literal[1] | None = None


TriggerIn = Annotated[
    CronTriggerIn | IntervalTriggerIn | OnceTriggerIn | ManualTriggerIn,
    Field(discriminator="kind"),
]


class DataWindowIn(_Strict):
    """The window each run covers: ``lookback_s`` before its due time, else from the previous
    fire; ``as_kwargs`` also passes it as ``window_start``/``window_end``/``scheduled_for``."""

    lookback_s: int | None = Field(default=None, ge=1, le=MAX_LOOKBACK_S)
    as_kwargs: bool = False
    v: Literal[1] | None = None


class JobOptionsIn(_Strict):
    """How each run executes (as for ``/api/v1/tasks``; where it runs is the job's own
    ``queue``/``target_worker``)."""

    retry: RetryPolicy | None = None
    soft_time_limit: float | None = Field(default=None, gt=0, le=7 * 86_400)
    time_limit: float | None = Field(default=None, gt=0, le=7 * 86_400)
    expires: float | None = Field(default=None, gt=0, le=366 * 86_400)
    priority: int | None = Field(default=None, ge=0, le=9, description="0 lowest … 9 highest")


# --- requests ---------------------------------------------------------------------------


WORKFLOW_FIELD = (
    "a workflow definition (see /api/v1/workflows/validate): the job then runs it, stored as "
    f"task {WORKFLOW_TASK} with kwargs {{definition: ...}}; leave task, args and kwargs out"
)


class JobFields(_Strict):
    """A job's definition without its name. Omitted fields take their defaults (a full
    replace resets them too); ``timezone`` and ``queue`` default to the server's settings.
    A job runs either ``task`` or ``workflow``."""

    workflow: Kwargs | None = Field(default=None, description=WORKFLOW_FIELD)
    # Checked even when left out, after ``workflow`` (declared before it): one of the two.
    task: TaskName | None = Field(
        default=None, validate_default=True, description="the task to run, unless workflow"
    )
    trigger: TriggerIn
    timezone: ZoneName | None = None
    args: Args = Field(default_factory=list)
    kwargs: Kwargs = Field(default_factory=dict)
    queue: QueueName | None = None
    target_worker: str | None = Field(default=None, min_length=1, max_length=200)
    broadcast: bool = False
    options: JobOptionsIn = Field(default_factory=JobOptionsIn)
    description: str = Field(default="", max_length=10_000)
    enabled: bool = True
    tags: list[Tag] = Field(default_factory=list, max_length=32)
    start_at: Instant | None = None
    end_at: Instant | None = None
    max_runs: int | None = Field(default=None, ge=1, le=2**31 - 1)
    jitter_ms: int = Field(default=0, ge=0, le=3_600_000)
    misfire_policy: MisfirePolicy = MisfirePolicy.RUN_ONCE
    misfire_grace_s: int = Field(default=60, ge=0, le=7 * 86_400)
    overlap_policy: OverlapPolicy = OverlapPolicy.ALLOW
    data_window: DataWindowIn | None = None

    @field_validator("task", mode="after")
    @classmethod
    def _task_or_workflow(cls, task: str | None, info: ValidationInfo) -> str:
        if task is not None:
            return task
        if info.data.get("workflow") is None:
            raise ValueError("give the task to run, or a workflow")
        return WORKFLOW_TASK


class JobCreate(JobFields):
    name: JobName


class JobReplace(JobCreate):
    """A full replace: ``version`` is the one you read; another is a 409."""

    version: int = Field(ge=1, le=2**31 - 1)


class JobUpsert(JobFields):
    """The definition for ``PUT /jobs/by-name/{name}``; ``name``, if given, must match."""

    name: JobName | None = None


class JobPatch(_Strict):
    """Only the fields sent change; ``null`` clears the nullable ones (bounds, data window,
    target worker). ``version`` is the one you read; another is a 409."""

    version: int = Field(ge=1, le=2**31 - 1)
    name: JobName | None = None
    task: TaskName | None = None
    workflow: Kwargs | None = Field(default=None, description=WORKFLOW_FIELD)
    trigger: TriggerIn | None = None
    timezone: ZoneName | None = None
    args: Args | None = None
    kwargs: Kwargs | None = None
    queue: QueueName | None = None
    target_worker: str | None = Field(default=None, min_length=1, max_length=200)
    broadcast: bool | None = None
    options: JobOptionsIn | None = None
    description: str | None = Field(default=None, max_length=10_000)
    enabled: bool | None = None
    tags: list[Tag] | None = Field(default=None, max_length=32)
    start_at: Instant | None = None
    end_at: Instant | None = None
    max_runs: int | None = Field(default=None, ge=1, le=2**31 - 1)
    jitter_ms: int | None = Field(default=None, ge=0, le=3_600_000)
    misfire_policy: MisfirePolicy | None = None
    misfire_grace_s: int | None = Field(default=None, ge=0, le=7 * 86_400)
    overlap_policy: OverlapPolicy | None = None
    data_window: DataWindowIn | None = None


class RunNowIn(_Strict):
    """Arguments for this one run; the job's own are used for those left out."""

    args: Args | None = None
    kwargs: Kwargs | None = None


class PreviewIn(_Strict):
    """A trigger to try before saving: its next ``n`` fires after ``after`` (default now)."""

    trigger: TriggerIn
    timezone: ZoneName | None = None
    n: int = Field(default=5, ge=1, le=100)
    after: Instant | None = None
    start_at: Instant | None = None
    end_at: Instant | None = None
    max_runs: int | None = Field(default=None, ge=1, le=2**31 - 1)
    name: JobName | None = Field(default=None, description="the job's name, needed for H")


# --- responses --------------------------------------------------------------------------


class JobOut(BaseModel):
    """A job: its whole definition, its scheduler state and ``version`` for updates.
    Instants are ISO 8601 in UTC."""

    model_config = ConfigDict(from_attributes=True, extra="forbid")

    id: int
    name: str
    description: str
    task: str
    trigger: dict[str, Any]
    timezone: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str
    target_worker: str | None
    broadcast: bool
    options: dict[str, Any]
    enabled: bool
    tags: list[str]
    start_at: datetime | None
    end_at: datetime | None
    max_runs: int | None
    jitter_ms: int
    misfire_policy: str
    misfire_grace_s: int
    overlap_policy: str
    data_window: dict[str, Any] | None
    next_fire_at: datetime | None
    last_fire_at: datetime | None
    last_state: str | None
    last_run_id: str | None
    fire_count: int
    version: int
    created_by: str | None
    created_at: datetime
    updated_at: datetime


class JobPage(BaseModel):
    items: list[JobOut]
    total: int
    limit: int
    offset: int


class RunNowOut(BaseModel):
    """The run is stored and handed to the scheduler; follow it at ``/api/v1/runs/{run_id}``."""

    run_id: str
    job_id: int
    state: str


class FireTime(BaseModel):
    local: datetime = Field(description="in the trigger's time zone")
    utc: datetime


class PreviewOut(BaseModel):
    timezone: str
    fire_times: list[FireTime]


class VersionConflict(BaseModel):
    field: Literal["version"]
    message: str
    current_version: int


class ConflictOut(BaseModel):
    """A 409: a stale ``version`` (with the current one), or a name already taken."""

    detail: VersionConflict | str
