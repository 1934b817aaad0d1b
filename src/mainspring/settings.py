"""Typed settings from ``MAINSPRING_*`` environment variables and an optional TOML file.

Built once at each entry point and passed down; nothing reads the environment at import time.
"""

from __future__ import annotations

import json
import os
import secrets
import tomllib
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mainspring.errors import ConfigError
from mainspring.worker.routing import check_queue_name

EMBEDDED_STATE_FILE = "run/embedded.json"


class Settings(BaseSettings):
    """Everything a Mainspring process needs to know; defaults need no external service."""

    model_config = SettingsConfigDict(env_prefix="MAINSPRING_", extra="forbid")

    data_dir: Path = Field(default_factory=lambda: Path.home() / ".mainspring")
    database_url: str | None = None
    broker_url: str | None = None
    result_backend: str | None = None
    timezone: str = "UTC"
    secret_key: str | None = None
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=8470, ge=0, le=65535)
    web_processes: int = Field(default=1, ge=1, le=64)  # processes sharing the web port
    admin_password: str | None = None
    default_queue: str = "default"
    worker_queues: list[str] = Field(default_factory=lambda: ["default"])
    worker_concurrency: int = Field(default=2, ge=1, le=512)
    worker_allow_shell: bool = False
    # Worker options (M4): see docs/workers.md.
    worker_hostname: str | None = None
    worker_pool: Literal["prefork", "threads", "solo"] = "prefork"
    worker_include: list[str] = Field(default_factory=list)
    worker_max_tasks_per_child: int | None = Field(default=None, ge=1)
    worker_max_memory_per_child: int | None = Field(default=None, ge=1024)  # KiB
    worker_shell_allow: list[str] = Field(default_factory=list)
    worker_acks_late: bool = False
    # Alert channels of kind "command" run programs on the recorder (and web) host: opt-in.
    alerts_allow_commands: bool = False
    # Messages each pool process reserves ahead (Celery's default, 4): 1 suits long tasks.
    worker_prefetch_multiplier: int = Field(default=4, ge=1, le=1000)
    # RabbitMQ priorities need queues declared with x-max-priority (plain clients: the same
    # ``task_queue_max_priority``); Redis needs nothing.
    queue_max_priority: int | None = Field(default=None, ge=1, le=255)
    # Redis redelivers an unacknowledged (late-ack) message after this long.
    broker_visibility_timeout_s: int = Field(default=12 * 3600, ge=1)
    task_routes: dict[str, str] = Field(default_factory=dict)
    guard_url: str | None = None
    guard_ttl_s: int = Field(default=7 * 24 * 3600, ge=60)
    run_log_cap_bytes: int = Field(default=1024 * 1024, ge=1024)
    retention_days: int | None = Field(default=30, ge=1)
    retention_max_runs: int | None = Field(default=None, ge=1)
    scheduler_poll_interval: float = Field(default=1.0, gt=0, le=60)
    cookie_secure: bool = False
    debug: bool = False

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r} (e.g. Asia/Shanghai)") from exc
        return value

    @field_validator("worker_queues", "worker_include", "worker_shell_allow", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.lstrip().startswith("["):
            return [q.strip() for q in value.split(",") if q.strip()]
        return value

    @field_validator("worker_queues")
    @classmethod
    def _valid_queues(cls, value: list[str]) -> list[str]:
        for name in value:
            check_queue_name(name)
        return value

    @field_validator("default_queue")
    @classmethod
    def _valid_default_queue(cls, value: str) -> str:
        return check_queue_name(value)

    @field_validator("task_routes")
    @classmethod
    def _valid_routes(cls, value: dict[str, str]) -> dict[str, str]:
        for queue in value.values():
            check_queue_name(queue)
        return value

    @property
    def resolved_database_url(self) -> str:
        """The database URL; SQLite in the data directory unless one is configured."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'mainspring.db'}"

    @property
    def uses_embedded_broker(self) -> bool:
        return self.broker_url is None

    @property
    def resolved_broker_url(self) -> str:
        """The broker URL; the embedded Redis started by ``mainspring up`` unless one is set."""
        if self.broker_url:
            return self.broker_url
        state = read_embedded_state(self.data_dir)
        if state is None:
            raise ConfigError(
                "no broker: start the embedded one with `mainspring up`, "
                "or set MAINSPRING_BROKER_URL (e.g. redis://127.0.0.1:6379/0)"
            )
        return str(state["broker_url"])

    @property
    def resolved_result_backend(self) -> str:
        """Where task results live: the Redis broker itself, else the database."""
        if self.result_backend:
            return self.result_backend
        broker = self.resolved_broker_url
        if broker.startswith(("redis://", "rediss://")):
            return broker
        return "db+" + self.resolved_database_url

    @property
    def resolved_guard_url(self) -> str | None:
        """The Redis holding run claims and revocations: configured, else the broker or the
        result backend when either is Redis; None means the result backend's state is used."""
        if self.guard_url:
            return self.guard_url
        for url in (self.resolved_broker_url, self.resolved_result_backend):
            if url.startswith(("redis://", "rediss://")):
                return url
        return None

    def with_secret_key(self) -> Settings:
        """Return settings whose secret key is set, generating and keeping one on first start."""
        if self.secret_key:
            return self
        return self.model_copy(update={"secret_key": load_or_create_secret(self.data_dir)})


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build settings: explicit overrides > environment > TOML file > defaults."""
    path = config_file or os.environ.get("MAINSPRING_CONFIG")
    file_values: dict[str, Any] = {}
    if path:
        file_values = _read_toml(Path(path))
    env_keys = {
        name for name in Settings.model_fields if f"MAINSPRING_{name.upper()}" in os.environ
    }
    init = {k: v for k, v in file_values.items() if k not in env_keys}
    init.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings(**init)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    section = data.get("mainspring", data)
    if not isinstance(section, dict):
        raise ConfigError(f"config file {path}: [mainspring] must be a table")
    return section


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "settings"
    if first["type"] == "extra_forbidden":
        return f"unknown setting {field!r}"
    return f"setting {field} (MAINSPRING_{field.upper()}): {first['msg']}"


def load_or_create_secret(data_dir: Path) -> str:
    """Return the secret key kept in the data directory, creating it (mode 0600) if missing."""
    path = data_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    ensure_data_dir(data_dir)
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    return key


def ensure_data_dir(data_dir: Path) -> None:
    """Create the data directory or fail with a line saying why."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe = data_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"data directory {data_dir} is not writable ({exc.strerror}); "
            "set MAINSPRING_DATA_DIR to a writable directory"
        ) from None


def read_embedded_state(data_dir: Path) -> dict[str, Any] | None:
    """What ``mainspring up`` wrote about its embedded broker, if it is running."""
    path = data_dir / EMBEDDED_STATE_FILE
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return state
