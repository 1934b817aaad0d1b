"""What channels and rules are made of: the kinds, each kind's settings, validated strictly.

Stored channel ``config`` and rule ``params`` are these models dumped with a ``v`` key, so a
later version can read what an earlier one wrote. Secrets (a webhook's HMAC ``secret``, an SMTP
``password``, header values such as ``Authorization``) are stored as given and masked by
``services.audit.mask_secrets`` wherever a channel is listed or audited.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl
from pydantic import ValidationError as PydanticValidationError

from mainspring.errors import ValidationError

CONFIG_VERSION = 1


class ChannelKind(StrEnum):
    WEBHOOK = "webhook"
    EMAIL = "email"
    COMMAND = "command"


class RuleKind(StrEnum):
    RUN_FAILED = "run_failed"  # a run ended FAILURE or LOST
    RETRIES_EXHAUSTED = "retries_exhausted"  # ... after its last retry
    DURATION_EXCEEDED = "duration_exceeded"  # ran (or still runs) longer than max_duration_s
    FIRE_MISSED = "fire_missed"  # a fire SKIPPED, or not started within grace_s
    RECOVERED = "recovered"  # first success after failures
    WORKER_OFFLINE = "worker_offline"
    SCHEDULER_DOWN = "scheduler_down"  # no scheduler heartbeat
    RECORDER_LAG = "recorder_lag"  # events written more than max_lag_s after they happened
    QUEUE_LENGTH = "queue_length"  # more than max_length messages waiting


# Rules about runs can be narrowed to one job or one tag; the others are system-wide.
RUN_RULES = frozenset(
    {
        RuleKind.RUN_FAILED,
        RuleKind.RETRIES_EXHAUSTED,
        RuleKind.DURATION_EXCEEDED,
        RuleKind.FIRE_MISSED,
        RuleKind.RECOVERED,
    }
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


HeaderName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9-]+$")]


class WebhookConfig(_Strict):
    url: HttpUrl
    headers: dict[HeaderName, Annotated[str, Field(max_length=2000)]] = Field(default_factory=dict)
    # HMAC-SHA256 of the body, sent as ``X-Mainspring-Signature: sha256=<hex>``.
    secret: str | None = Field(default=None, max_length=500)
    timeout_s: float = Field(default=10.0, gt=0, le=60)
    console_url: HttpUrl | None = None


class EmailConfig(_Strict):
    host: str = Field(min_length=1, max_length=255)
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["none", "starttls", "ssl"] = "starttls"
    username: str | None = Field(default=None, max_length=255)
    password: str | None = Field(default=None, max_length=500)
    from_addr: str = Field(min_length=3, max_length=255, pattern=r"^[^@\s]+@[^@\s]+$")
    to: list[Annotated[str, Field(max_length=255, pattern=r"^[^@\s]+@[^@\s]+$")]] = Field(
        min_length=1, max_length=50
    )
    timeout_s: float = Field(default=10.0, gt=0, le=60)
    console_url: HttpUrl | None = None


class CommandConfig(_Strict):
    """``argv`` is run without a shell; the alert's JSON arrives on stdin."""

    argv: list[Annotated[str, Field(min_length=1, max_length=1000)]] = Field(
        min_length=1, max_length=50
    )
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    console_url: HttpUrl | None = None


CONFIG_MODELS: dict[ChannelKind, type[_Strict]] = {
    ChannelKind.WEBHOOK: WebhookConfig,
    ChannelKind.EMAIL: EmailConfig,
    ChannelKind.COMMAND: CommandConfig,
}


class RuleParams(_Strict):
    """Thresholds; each rule kind reads the ones it needs and the defaults suit the rest."""

    grace_s: float = Field(default=60.0, gt=0, le=86400)
    max_duration_s: float = Field(default=3600.0, gt=0, le=7 * 86400)
    max_lag_s: float = Field(default=30.0, gt=0, le=86400)
    max_length: int = Field(default=1000, ge=0, le=10**9)
    queue: str | None = Field(default=None, max_length=200)


def _first_error(exc: PydanticValidationError, prefix: str) -> ValidationError:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"] if p != "[key]")
    return ValidationError(f"{prefix}.{where}" if where else prefix, str(err["msg"]))


def parse_config(kind: ChannelKind, raw: dict[str, Any]) -> dict[str, Any]:
    """The stored form of a channel's settings (with ``v``); a bad one names its field."""
    body = {k: v for k, v in raw.items() if k != "v"}
    try:
        model = CONFIG_MODELS[kind].model_validate(body)
    except PydanticValidationError as exc:
        raise _first_error(exc, "config") from None
    return {"v": CONFIG_VERSION, **model.model_dump(mode="json", exclude_none=True)}


def load_config(kind: str, stored: dict[str, Any]) -> Any:
    """The typed settings of a stored channel."""
    return CONFIG_MODELS[ChannelKind(kind)].model_validate(
        {k: v for k, v in stored.items() if k != "v"}
    )


def parse_params(raw: dict[str, Any]) -> dict[str, Any]:
    body = {k: v for k, v in raw.items() if k != "v"}
    try:
        model = RuleParams.model_validate(body)
    except PydanticValidationError as exc:
        raise _first_error(exc, "params") from None
    return {"v": CONFIG_VERSION, **model.model_dump(mode="json", exclude_none=True)}


def load_params(stored: dict[str, Any]) -> RuleParams:
    return RuleParams.model_validate({k: v for k, v in stored.items() if k != "v"})
