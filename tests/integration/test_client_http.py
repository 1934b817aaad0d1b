"""``mainspring.Client`` against a real web server (uvicorn on a loopback port): jobs by name,
submissions with idempotency, waiting for a result and following logs from real workers, and
one clear exception per kind of failure."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvicorn

import mainspring
from mainspring.api.app import create_app
from mainspring.api.server import bind_socket
from mainspring.client.errors import (
    AuthenticationFailed,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    ServerUnavailable,
)
from mainspring.context import AppContext
from mainspring.core.states import Role
from mainspring.services.auth import create_api_token
from mainspring.services.users import create_user
from tests.conftest import RecordingSystem
from tests.helpers import poll


class Server:
    """``create_app`` served by uvicorn in a thread, on a free loopback port."""

    def __init__(self, ctx: AppContext) -> None:
        self.sock = bind_socket("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(create_app(ctx), log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> Server:
        self.thread.start()
        poll(lambda: self.server.started, timeout=30, what="the web server")
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()
        assert not self.thread.is_alive(), "the web server did not stop"


@pytest.fixture
def server(ctx: AppContext, tokens: dict[Role, str]) -> Iterator[str]:
    with Server(ctx) as running:
        yield running.url


def test_jobs_by_name_round_trip(server: str, tokens: dict[Role, str]) -> None:
    with mainspring.Client(server, token=tokens[Role.OPERATOR]) as ms:
        job, created = ms.upsert_job(
            "nightly report", "reports.build", cron="0 2 * * *", timezone="Asia/Shanghai"
        )
        assert created is True
        assert job.name == "nightly report"
        assert job.next_fire_at is not None
        again, created = ms.upsert_job("nightly report", "reports.build", cron="30 2 * * *")
        assert created is False
        assert again.version == job.version + 1
        assert [j.name for j in ms.list_jobs(text="nightly")] == ["nightly report"]
        assert ms.pause_job("nightly report").enabled is False
        assert ms.resume_job("nightly report").enabled is True
        run_id = ms.run_job_now("nightly report", kwargs={"day": "2026-11-23"})
        assert ms.get_run(run_id).task == "reports.build"
        fires = ms.preview({"kind": "cron", "expr": "0 * * * *"}, timezone="UTC", n=3)
        assert len(fires) == 3
        assert all(f.minute == 0 for f in fires)
        ms.delete_job("nightly report")
        with pytest.raises(NotFound):
            ms.get_job("nightly report")


def test_each_failure_is_its_own_exception(server: str, tokens: dict[Role, str]) -> None:
    with mainspring.Client(server, token=tokens[Role.OPERATOR]) as ms:
        with pytest.raises(InvalidRequest) as bad:
            ms.upsert_job("broken", "t.x", cron="not a cron")
        assert bad.value.field is not None
        assert "trigger" in bad.value.field
    with mainspring.Client(server, token=tokens[Role.VIEWER]) as viewer:
        assert viewer.list_jobs() == []
        with pytest.raises(PermissionDenied):
            viewer.upsert_job("nope", "t.x", manual=True)
    with (
        mainspring.Client(server, token="ms_wrong") as stranger,
        pytest.raises(AuthenticationFailed),
    ):
        stranger.list_jobs()
    with (
        mainspring.Client("http://127.0.0.1:9", timeout=2) as nowhere,
        pytest.raises(ServerUnavailable),
    ):
        nowhere.list_jobs()


@pytest.mark.celery
@pytest.mark.redis
def test_submit_wait_and_follow_logs_with_real_workers(
    recording: Callable[[str], RecordingSystem], redis_url: str, data_dir: Path
) -> None:
    system = recording(redis_url)
    with system.ctx.session() as session:
        user = create_user(session, "app", "correct-horse-1", Role.OPERATOR)
        token, _ = create_api_token(session, user, "client test")
    system.start_recorder()
    system.start_worker()
    with Server(system.ctx) as running, mainspring.Client(running.url, token=token) as ms:
        first = ms.submit("tasks.add", [2, 3], idempotency_key="order-42")
        again = ms.submit("tasks.add", [2, 3], idempotency_key="order-42")
        assert again.id == first.id
        assert (first.replayed, again.replayed) == (False, True)
        run = ms.wait(first.id, timeout=60)
        assert (run.state, run.result) == ("SUCCESS", 5)
        printing = ms.submit("tests.print_lines", [50])
        lines = "".join(ms.follow_logs(printing.id)).splitlines()
        assert lines[0] == "line 000000"
        assert lines[-1] == "line 000049"
        assert len(lines) == 50
        workers = ms.list_workers()
        assert any(w.status == "online" for w in workers)
