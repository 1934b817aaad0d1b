"""The seeds' curl lines against a real server and real workers, and async-apply + result
over RabbitMQ.

The web app is served by uvicorn in a process of its own, behind a path prefix as seed 000's
deployment has it (``celery flower --url_prefix=productor`` behind nginx): the launcher
strips ``/productor`` as ``location /productor/ { proxy_pass http://mainspring/; }`` would.
Each curl line is run by bash exactly as the seed wrote it, only the host (and the password,
which must have 8 characters here) replaced.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from mainspring.api.app import create_app
from mainspring.context import AppContext
from mainspring.core.states import Role
from mainspring.db.models import Run
from mainspring.services.users import create_user
from mainspring.settings import Settings
from tests.conftest import WorkerPool
from tests.helpers import poll, stop_process_tree

pytestmark = [pytest.mark.celery, pytest.mark.e2e]

SEED_000 = (
    "curl -u root:testxxx -i -X POST -H \"'Content-type':'application/json'\"  "
    '-d \'{"args" :["www.test.com"]}\' '
    "http://task.web.com/productor/api/task/send-task/remote.tasks.http"
)
SEED_002 = (
    "curl -X POST -d '{\"args\":[1,2]}' http://192.168.29.234:5555/api/task/async-apply/tasks.add"
)
PASSWORD = "testxxxx"

LAUNCHER = """
import socket, sys
from pathlib import Path
import uvicorn
from mainspring.api.app import create_app
from mainspring.context import AppContext
from mainspring.settings import load_settings

app = create_app(AppContext.open(load_settings()))
PREFIX = "/productor"

async def behind_proxy(scope, receive, send):
    path = scope.get("path", "")
    if scope["type"] == "http" and path.startswith(PREFIX + "/"):
        stripped = path[len(PREFIX):]
        scope = {**scope, "path": stripped, "raw_path": stripped.encode()}
    await app(scope, receive, send)

sock = socket.socket()
sock.bind(("127.0.0.1", 0))
Path(sys.argv[1]).write_text(str(sock.getsockname()[1]))
config = uvicorn.Config(behind_proxy, log_level="warning", proxy_headers=False)
uvicorn.Server(config).run(sockets=[sock])
"""

REMOTE_TASKS = """
from celery import Celery

app = Celery()


@app.task
def http(url):
    return "fetched " + url
"""


def _project(tmp_path: Path) -> Path:
    """Seed 002's ``tasks.py`` and seed 000's ``remote/tasks.py`` (task ``remote.tasks.http``)."""
    project = tmp_path / "project"
    (project / "remote").mkdir(parents=True)
    shutil.copy(Path(__file__).parents[1] / "worker_tasks" / "seed002.py", project / "tasks.py")
    (project / "remote" / "__init__.py").write_text("")
    (project / "remote" / "tasks.py").write_text(REMOTE_TASKS)
    return project


@pytest.fixture
def server(redis_url: str, data_dir: Path, tmp_path: Path, fast_argon2: None) -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of the web app, with user ``root`` (operator)."""
    settings = Settings(data_dir=data_dir, broker_url=redis_url, secret_key="seed-secret")
    ctx = AppContext.open(settings)
    with ctx.session() as session:
        create_user(session, "root", PASSWORD, Role.OPERATOR)
    ctx.close()
    port_file = tmp_path / "port"
    env = {
        "MAINSPRING_DATA_DIR": str(data_dir),
        "MAINSPRING_BROKER_URL": redis_url,
        "MAINSPRING_SECRET_KEY": "seed-secret",
        "PATH": "/usr/bin:/bin",
    }
    with (tmp_path / "web.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, str(port_file)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        port = poll(lambda: port_file.exists() and port_file.read_text(), 30, what="the port")
        base = f"http://127.0.0.1:{port}"
        poll(lambda: _healthy(base, proc, tmp_path), timeout=30, what="the web server")
        yield base
    finally:
        assert stop_process_tree(proc) == []


def _healthy(base: str, proc: subprocess.Popen[bytes], tmp_path: Path) -> bool:
    if proc.poll() is not None:
        raise AssertionError((tmp_path / "web.log").read_text())
    try:
        return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _curl(command: str) -> tuple[int, dict[str, Any]]:
    """Run a curl line with bash; its status code and JSON body (``-i`` output or not)."""
    done = subprocess.run(
        ["bash", "-c", command + " -s -w '\\n%{http_code}'"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    *body_lines, status = done.stdout.rstrip("\n").split("\n")
    body = "\n".join(body_lines).split("\n\n")[-1]  # after the -i headers, if any
    return int(status), json.loads(body)


def _result(base: str, task_id: str) -> dict[str, Any]:
    answer = httpx.get(
        f"{base}/api/task/result/{task_id}?timeout=30", auth=("root", PASSWORD), timeout=40
    )
    result: dict[str, Any] = answer.json()
    return result


def test_the_seeds_curl_lines_work_against_mainspring(
    server: str, redis_url: str, data_dir: Path, tmp_path: Path, worker_pool: WorkerPool
) -> None:
    env = {"MAINSPRING_DATA_DIR": str(data_dir), "MAINSPRING_BROKER_URL": redis_url}
    worker = worker_pool.start(
        env,
        *("-P", "threads", "-c", "2", "--include", "tasks", "--include", "remote.tasks"),
        name="celery_worker234@t",
        cwd=_project(tmp_path),
    )
    host = server.removeprefix("http://")
    seed000 = SEED_000.replace("root:testxxx", f"root:{PASSWORD}").replace(
        "http://task.web.com", server
    )
    seed002 = SEED_002.replace("http://192.168.29.234:5555", f"http://root:{PASSWORD}@{host}")
    anonymous = SEED_002.replace("http://192.168.29.234:5555", server)

    status000, sent000 = _curl(seed000)
    status002, sent002 = _curl(seed002)
    status_anonymous, refused = _curl(anonymous)

    assert (status000, sent000["state"]) == (200, "PENDING")
    assert (status002, sent002["state"]) == (200, "PENDING")
    assert _result(server, sent000["task-id"]) == {
        "task-id": sent000["task-id"],
        "state": "SUCCESS",
        "result": "fetched www.test.com",
    }
    assert _result(server, sent002["task-id"])["result"] == [3, worker]
    assert status_anonymous == 401
    assert "curl -u USER:PASSWORD" in refused["detail"]


def test_apply_over_curl_waits_for_the_result(
    server: str, redis_url: str, data_dir: Path, tmp_path: Path, worker_pool: WorkerPool
) -> None:
    env = {"MAINSPRING_DATA_DIR": str(data_dir), "MAINSPRING_BROKER_URL": redis_url}
    worker = worker_pool.start(
        env, "-P", "threads", "-c", "1", "--include", "tasks", cwd=_project(tmp_path)
    )

    status, applied = _curl(
        f"curl -u root:{PASSWORD} -X POST -d '{{\"args\":[2,3]}}' "
        f"{server}/productor/api/task/apply/tasks.add"
    )

    assert status == 200
    assert (applied["state"], applied["result"]) == ("SUCCESS", [5, worker])


@pytest.mark.rabbitmq
def test_async_apply_and_result_over_rabbitmq(
    rabbitmq_url: str,
    data_dir: Path,
    ctx: AppContext,
    tokens: dict[Role, str],
    worker_pool: WorkerPool,
    tmp_path: Path,
) -> None:
    """Results in the database backend (RabbitMQ keeps none); a queue of the test's own."""
    queue = f"flower-{uuid.uuid4().hex[:8]}"
    env = {"MAINSPRING_DATA_DIR": str(data_dir), "MAINSPRING_BROKER_URL": rabbitmq_url}
    worker = worker_pool.start(
        env, "-P", "threads", "-c", "1", "-Q", queue, "--include", "tasks", cwd=_project(tmp_path)
    )
    settings = Settings(data_dir=data_dir, broker_url=rabbitmq_url, secret_key="k")
    rabbit = AppContext.open(settings)
    headers = {"Authorization": f"Bearer {tokens[Role.OPERATOR]}"}
    try:
        with TestClient(create_app(rabbit)) as client:
            sent = client.post(
                "/api/task/async-apply/tasks.add",
                content=f'{{"args": [20, 22], "queue": "{queue}"}}'.encode(),
                headers=headers,
            ).json()
            result = client.get(f"/api/task/result/{sent['task-id']}?timeout=30", headers=headers)
            lengths = client.get("/api/queues/length", headers=headers)
        with rabbit.session() as session:
            run = session.get(Run, sent["task-id"])
            assert run is not None
            assert run.queue == queue
    finally:
        rabbit.close()

    assert result.json() == {"task-id": sent["task-id"], "state": "SUCCESS", "result": [42, worker]}
    assert lengths.status_code == 200
    assert all(q["messages"] >= 0 for q in lengths.json()["active_queues"])
