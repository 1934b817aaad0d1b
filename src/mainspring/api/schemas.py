"""Response bodies of the JSON API; built from ORM rows, so routes never hand out models."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class RunOut(BaseModel):
    """One run with its whole timeline; instants are ISO 8601 in UTC."""

    # extra="forbid" also keeps the pydantic mypy plugin from adding a ``**kwargs`` to
    # ``__init__`` that would clash with the ``kwargs`` field.
    model_config = ConfigDict(from_attributes=True, extra="forbid")

    id: str
    job_id: int | None
    task: str
    args: list[Any] | None
    kwargs: dict[str, Any] | None
    queue: str | None
    worker: str | None
    state: str
    attempt: int
    trigger: str
    scheduled_for: datetime | None
    created_at: datetime
    sent_at: datetime | None
    received_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    lateness_ms: float | None
    runtime_ms: float | None
    result: Any
    exception_type: str | None
    exception_message: str | None


class RunPage(BaseModel):
    items: list[RunOut]
    next_cursor: str | None


class RunLogOut(BaseModel):
    """Log text after ``after_seq``; pass ``last_seq`` back to read only what is new."""

    text: str
    last_seq: int


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, extra="forbid")

    id: int
    name: str
    task: str
    queue: str
    enabled: bool
    trigger: dict[str, Any]
    timezone: str
    next_fire_at: datetime | None
    last_fire_at: datetime | None
    last_state: str | None


class JobPage(BaseModel):
    items: list[JobOut]
    total: int


class FieldError(BaseModel):
    field: str
    message: str


class ValidationErrorOut(BaseModel):
    detail: FieldError


class ErrorOut(BaseModel):
    detail: str


class Health(BaseModel):
    status: str
