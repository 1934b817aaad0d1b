"""The ``mainspring.http`` built-in on a real worker, against a server started by the test."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from celery import Celery

from mainspring.settings import Settings
from mainspring.worker.app import make_celery
from tests.conftest import WorkerPool

pytestmark = [pytest.mark.celery, pytest.mark.redis]


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/slow":
            time.sleep(3)  # the server's behaviour under test, not synchronisation
        status = 500 if self.path == "/fail" else 200
        body = b"broken" if status == 500 else b"x" * 5000
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def app(redis_url: str, data_dir: Path, worker_pool: WorkerPool) -> Iterator[Celery]:
    env = {"MAINSPRING_DATA_DIR": str(data_dir), "MAINSPRING_BROKER_URL": redis_url}
    worker_pool.start(env, "-P", "threads", "-c", "2")
    celery = make_celery(Settings(data_dir=data_dir, broker_url=redis_url))
    yield celery
    celery.close()


def test_http_success_returns_status_elapsed_and_capped_body(app: Celery, server: str) -> None:
    params = {"url": f"{server}/ok", "max_body_bytes": 100}
    result = app.send_task("mainspring.http", kwargs=params).get(timeout=30)
    assert result["status"] == 200
    assert result["elapsed_ms"] >= 0
    assert result["body"] == "x" * 100
    assert result["body_truncated"] is True


def test_http_500_fails_the_run(app: Celery, server: str) -> None:
    result = app.send_task("mainspring.http", kwargs={"url": f"{server}/fail"})
    result.get(timeout=30, propagate=False)
    assert result.state == "FAILURE"
    assert type(result.result).__name__ == "HttpStatusError"
    assert "status 500: broken" in str(result.result)


def test_http_500_succeeds_when_expected(app: Celery, server: str) -> None:
    params = {"url": f"{server}/fail", "expect_status": [500]}
    assert app.send_task("mainspring.http", kwargs=params).get(timeout=30)["status"] == 500


def test_http_timeout_fails_the_run(app: Celery, server: str) -> None:
    result = app.send_task("mainspring.http", kwargs={"url": f"{server}/slow", "timeout": 0.5})
    result.get(timeout=30, propagate=False)
    assert result.state == "FAILURE"
    assert type(result.result).__name__ == "HttpRequestError"
    assert "Timeout" in str(result.result)


def test_python_task_calls_a_function_by_dotted_path(app: Celery) -> None:
    params = {"path": "os.path:join", "args": ["a", "b"]}
    assert app.send_task("mainspring.python", kwargs=params).get(timeout=30) == "a/b"
    bad = app.send_task("mainspring.python", kwargs={"path": "no.such.module:f"})
    bad.get(timeout=30, propagate=False)
    assert bad.state == "FAILURE"
    assert "cannot import 'no.such.module:f'" in str(bad.result)
