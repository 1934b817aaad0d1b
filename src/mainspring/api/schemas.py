"""Response bodies of the JSON API; built from ORM rows, so routes never hand out models."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from mainspring.core.states import Role


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


class FieldError(BaseModel):
    field: str
    message: str


class ValidationErrorOut(BaseModel):
    detail: FieldError


class ErrorOut(BaseModel):
    detail: str


class Health(BaseModel):
    status: str


# --- users, tokens, audit -----------------------------------------------------------------

Password = Annotated[str, Field(min_length=8, max_length=1000)]


class UserOut(BaseModel):
    """A user as admins see it; never the password hash."""

    model_config = ConfigDict(from_attributes=True, extra="forbid", populate_by_name=True)

    id: int
    username: str
    role: Role
    active: bool = Field(validation_alias="is_active")
    language: str | None
    timezone: str | None
    created_at: datetime
    last_login_at: datetime | None


class UserList(BaseModel):
    items: list[UserOut]


class MeOut(UserOut):
    """The caller: ``effective_role`` is lower than ``role`` when a token limits it."""

    auth_method: str
    effective_role: Role


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Checked again by the service; here so that the OpenAPI schema tells clients.
    username: str = Field(min_length=1, max_length=150, pattern=r"^[^\s:\x00-\x1f\x7f]+$")
    password: Password
    role: Role
    language: str | None = Field(default=None, max_length=16)
    timezone: str | None = Field(default=None, max_length=64)


class UserPatch(BaseModel):
    """Only the fields sent are changed; ``language``/``timezone`` null clears them."""

    model_config = ConfigDict(extra="forbid")

    role: Role | None = None
    active: bool | None = None
    password: Password | None = None
    language: str | None = Field(default=None, max_length=16)
    timezone: str | None = Field(default=None, max_length=64)


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current_password: str = Field(max_length=1000)
    new_password: Password


class TokenCreate(BaseModel):
    """``role`` defaults to the lower of the owner's and the caller's; ``username`` (admins
    only) creates the token for another user."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=150)
    role: Role | None = None
    expires_at: AwareDatetime | None = None
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)
    username: str | None = Field(default=None, min_length=1, max_length=150)


class TokenOut(BaseModel):
    """A token without its secret; ``prefix`` is its first characters, to tell tokens apart."""

    id: int
    name: str
    user_id: int
    username: str
    role: Role
    prefix: str
    status: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenOut):
    """The only answer that carries ``secret``: store it now, it cannot be shown again."""

    secret: str


class TokenList(BaseModel):
    items: list[TokenOut]


class AuditOut(BaseModel):
    """``changes`` is ``{"v": 1, "before": {...}, "after": {...}}`` with secrets as ``***``."""

    model_config = ConfigDict(from_attributes=True, extra="forbid")

    id: int
    at: datetime
    actor: str
    source_ip: str | None
    action: str
    object_type: str
    object_id: str | None
    changes: dict[str, Any] | None


class AuditPage(BaseModel):
    items: list[AuditOut]
    next_cursor: str | None


class SchemaErrorItem(BaseModel):
    """One error from request validation (FastAPI's shape); ``loc`` ends with the field."""

    loc: list[str | int]
    msg: str
    type: str


class RequestErrorOut(BaseModel):
    """A 422: either one ``{field, message}`` from a service rule, or the list of schema
    errors FastAPI found in the request."""

    detail: FieldError | list[SchemaErrorItem]


# What any authenticated endpoint may answer besides its own codes: a body that is not JSON
# (400), no or wrong credentials (401), bad input naming the field (422), too many wrong
# passwords (429).
API_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut},
    401: {"model": ErrorOut},
    422: {"model": RequestErrorOut},
    429: {"model": ErrorOut},
}
