"""Typed parameters of the built-in tasks; the API and console build forms from their JSON
Schema (``builtin_schemas``), and the worker validates every run against the same model.
"""

from __future__ import annotations

import re
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mainspring.worker.task import TaskRefusedError

SHELL = "mainspring.shell"
HTTP = "mainspring.http"
PYTHON = "mainspring.python"
ECHO = "mainspring.echo"

DOTTED_PATH = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*[:.][A-Za-z_][\w]*$")


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ShellParams(_Params):
    """A command to run: an argument list (no shell involved) or, explicitly, a shell script."""

    command: list[str] | None = Field(default=None, min_length=1, description="argv, no shell")
    script: str | None = Field(default=None, min_length=1, description="run with /bin/sh -c")
    cwd: str | None = Field(default=None, description="working directory")
    env: dict[str, str] = Field(default_factory=dict, description="extra environment")
    timeout: float | None = Field(default=None, gt=0, le=7 * 86400, description="seconds")

    @model_validator(mode="after")
    def _one_of_command_or_script(self) -> ShellParams:
        if (self.command is None) == (self.script is None):
            raise ValueError("give exactly one of command (argument list) or script")
        return self

    def argv(self) -> list[str]:
        if self.command is not None:
            return list(self.command)
        return ["/bin/sh", "-c", self.script or ""]


class HttpParams(_Params):
    """One HTTP request; success is a status in ``expect_status``."""

    url: str = Field(pattern=r"^https?://", description="http:// or https:// URL")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | dict[str, Any] | list[Any] | None = Field(
        default=None, description="text, or JSON for an object or array"
    )
    timeout: float = Field(default=30.0, gt=0, le=3600, description="seconds")
    expect_status: list[int] = Field(
        default_factory=lambda: list(range(200, 300)), description="statuses that mean success"
    )
    follow_redirects: bool = True
    max_body_bytes: int = Field(default=64 * 1024, ge=0, le=1024 * 1024)


class PythonParams(_Params):
    """Call an importable function: ``package.module:function`` or ``package.module.function``."""

    path: str = Field(pattern=DOTTED_PATH.pattern, description="dotted path of a callable")
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)


class EchoParams(_Params):
    message: str = "hello"


BUILTIN_PARAMS: dict[str, type[_Params]] = {
    SHELL: ShellParams,
    HTTP: HttpParams,
    PYTHON: PythonParams,
    ECHO: EchoParams,
}


class InvalidParamsError(TaskRefusedError):
    """The run's parameters do not match the built-in task's schema."""


P = TypeVar("P", bound=_Params)


def parse_params(model: type[P], task: str, kwargs: dict[str, Any]) -> P:
    """Validate ``kwargs`` or raise one readable error naming each bad field."""
    try:
        return model.model_validate(kwargs)
    except ValidationError as exc:
        raise InvalidParamsError(f"invalid parameters for {task}: {describe(exc)}") from None


def describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "parameters"
        parts.append(f"{field}: {err['msg']}")
    return "; ".join(parts)


def builtin_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schema of each built-in task's parameters, keyed by task name."""
    return {name: model.model_json_schema() for name, model in BUILTIN_PARAMS.items()}
