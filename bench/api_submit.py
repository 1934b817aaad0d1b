"""Task submission over HTTP: Mainspring (``POST /api/v1/tasks`` and the Flower-compatible
``POST /api/task/async-apply/{task}``) and Flower 2.x itself, side by side in one run.

Mainspring runs as ``mainspring web --processes 2`` on a fresh PostgreSQL database with the
local Redis as broker; every request authenticates with a bearer token, stores a run and
publishes the message. Flower runs as ``celery flower`` (no auth, its default) on the same
Redis with the same trivial task. Load comes from ``wrk`` (Debian package) with a small Lua
script; each target gets a warm-up, then ``--duration`` seconds at ``--connections``.

    apt-get install wrk; pip install flower   # bench-only tools, not Mainspring dependencies
    python bench/api_submit.py --duration 15 --connections 32
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from mainspring.context import AppContext
from mainspring.core.states import Role
from mainspring.services.auth import create_api_token
from mainspring.services.users import create_user
from mainspring.settings import Settings

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "api_submit.json"
ADMIN_URL = "postgresql://postgres@127.0.0.1/postgres"
LUA = """
wrk.method = "POST"
wrk.body = [[{body}]]
wrk.headers["Content-Type"] = "application/json"
{auth}
"""


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited while starting ({url})")
        try:
            urllib.request.urlopen(url, timeout=1)  # noqa: S310 - loopback
            return
        except OSError as exc:
            if getattr(exc, "code", None):  # an HTTP answer (even 401/404) means it is up
                return
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def wrk(url: str, body: str, token: str | None, seconds: int, connections: int) -> dict[str, Any]:
    auth = f'wrk.headers["Authorization"] = "Bearer {token}"' if token else ""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(LUA.format(body=body, auth=auth))
    args = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script.name, url]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    os.unlink(script.name)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    return {
        "requests_per_s": round(rate),
        "p99_ms": round(float(p99.group(1)) * scale[p99.group(2)], 1) if p99 else None,
        "errors": int(non2xx.group(1)) if non2xx else 0,
    }


def start_mainspring(db_url: str, broker: str, data_dir: Path, port: int) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAINSPRING_")}
    env.update(
        MAINSPRING_DATABASE_URL=db_url,
        MAINSPRING_BROKER_URL=broker,
        MAINSPRING_DATA_DIR=str(data_dir),
        MAINSPRING_WEB_PORT=str(port),
    )
    command = [sys.executable, "-m", "mainspring", "web", "--processes", "2"]
    return subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def start_flower(broker: str, port: int) -> Any:
    env = {**os.environ, "BENCH_BROKER": broker, "PYTHONPATH": str(HERE)}
    command = [sys.executable, "-m", "celery", "-A", "overhead_tasks", "flower", f"--port={port}",
               "--address=127.0.0.1", "--logging=warning"]  # fmt: skip
    return subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/11")
    args = parser.parse_args()
    db_name = f"ms_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    db_url = f"postgresql+psycopg://postgres@127.0.0.1/{db_name}"
    data_dir = Path(tempfile.mkdtemp(prefix="ms-api-bench-"))
    ctx = AppContext.open(Settings(database_url=db_url, data_dir=data_dir, broker_url=args.broker))
    with ctx.session() as session:
        user = create_user(session, "bench", "correct-horse-1", Role.OPERATOR)
        token, _ = create_api_token(session, user, "bench")
    ctx.close()
    results: dict[str, dict[str, Any]] = {}
    ms_port, flower_port = free_port(), free_port()
    ms = start_mainspring(db_url, args.broker, data_dir, ms_port)
    flower = start_flower(args.broker, flower_port)
    try:
        base = f"http://127.0.0.1:{ms_port}"
        wait_http(f"{base}/healthz", ms)
        wait_http(f"http://127.0.0.1:{flower_port}/api/workers", flower)
        targets = {
            "mainspring POST /api/v1/tasks": (
                f"{base}/api/v1/tasks",
                json.dumps({"task": "mainspring.echo", "kwargs": {"message": "hi"}}),
                token,
            ),
            "mainspring POST /api/task/async-apply": (
                f"{base}/api/task/async-apply/mainspring.echo",
                json.dumps({"kwargs": {"message": "hi"}}),
                token,
            ),
            "flower POST /api/task/async-apply": (
                f"http://127.0.0.1:{flower_port}/api/task/async-apply/bench.noop",
                json.dumps({"args": ["bench:flower"]}),
                None,
            ),
        }
        for name, (url, body, auth) in targets.items():
            wrk(url, body, auth, 3, args.connections)  # warm-up
            results[name] = wrk(url, body, auth, args.duration, args.connections)
            print(f"{name:42s} {results[name]}", flush=True)
    finally:
        stop(ms)
        stop(flower)
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
    print(f"\n| endpoint ({args.connections} connections) | requests/s | p99 | non-2xx |")
    print("| --- | --- | --- | --- |")
    for name, r in results.items():
        print(f"| {name} | {r['requests_per_s']} | {r['p99_ms']} ms | {r['errors']} |")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "date": datetime.now(UTC).isoformat(),
                "connections": args.connections,
                "duration_s": args.duration,
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
